//! Benchmark chains: generated once per parameter set into a cache directory
//! (`<cache>/<genesis>-n<blocks>-b<body>-s<seed>/`) and copied for each
//! seeder, so reruns skip generation.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use concord::chain::generate::ChainGenerator;
use concord::chain::{AuthorityKey, Genesis, Hash};
use concord::store::Store;

/// Which chain to generate.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ChainSpec {
    pub blocks: u64,
    pub body_bytes: usize,
    pub seed: u64,
}

/// A generated chain in the cache.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChainInfo {
    #[serde(skip)]
    pub dir: PathBuf,
    pub height: u64,
    pub tip: String,
    /// Sum of the CBOR encodings of every block (what travels on the wire
    /// inside blocks responses, and what the store holds).
    pub encoded_bytes: u64,
}

impl ChainInfo {
    pub fn tip_hash(&self) -> Hash {
        Hash::from_hex(&self.tip).unwrap_or(Hash::ZERO)
    }
}

const META: &str = "bench-chain.json";

/// Returns the cached chain for `spec`, generating it first if needed.
pub fn ensure(cache: &Path, genesis: &Genesis, spec: ChainSpec) -> anyhow::Result<ChainInfo> {
    let name = format!(
        "{}-n{}-b{}-s{}-l{}",
        &genesis.hash().to_hex()[..12],
        spec.blocks,
        spec.body_bytes,
        spec.seed,
        concord::store::LAYOUT_VERSION
    );
    let dir = cache.join(&name);
    if let Ok(text) = fs::read_to_string(dir.join(META)) {
        if let Ok(mut info) = serde_json::from_str::<ChainInfo>(&text) {
            info.dir = dir;
            return Ok(info);
        }
    }
    let tmp = cache.join(format!("{name}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    eprintln!(
        "bench: generating {} blocks of {} B (seed {}) into {}",
        spec.blocks,
        spec.body_bytes,
        spec.seed,
        dir.display()
    );
    let store = Store::open(&tmp, genesis)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut gen = ChainGenerator::new(
        genesis,
        AuthorityKey::dev(),
        store.tip(),
        spec.body_bytes,
        spec.seed,
    );
    let per_batch = (8 * 1024 * 1024 / (spec.body_bytes as u64 + 200)).clamp(1, 4096);
    let mut left = spec.blocks;
    let mut encoded_bytes = 0u64;
    while left > 0 {
        let n = left.min(per_batch);
        let blocks = gen.next_batch(n as usize, threads);
        encoded_bytes += blocks.iter().map(|b| b.encode().len() as u64).sum::<u64>();
        store.import(&blocks)?;
        left -= n;
    }
    store.flush()?;
    let tip = store.tip();
    drop(store);
    let info = ChainInfo {
        dir: dir.clone(),
        height: tip.height,
        tip: tip.hash.to_hex(),
        encoded_bytes,
    };
    fs::write(tmp.join(META), serde_json::to_string_pretty(&info)?)?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir)?;
    Ok(info)
}

/// Copies a chain's data dir (without the cache metadata) for one node.
pub fn copy_for_node(chain: &ChainInfo, dst: &Path) -> anyhow::Result<()> {
    copy_dir(&chain.dir, dst).with_context(|| format!("cannot copy chain to {}", dst.display()))?;
    let _ = fs::remove_file(dst.join(META));
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            fs::copy(entry.path(), &to)?;
        }
    }
    Ok(())
}
