//! Packet loss without netem, for kernels that lack `sch_netem` (and
//! `act_gact`, `cls_matchall`, iptables/nft) but have `htb`, `u32` and
//! `pfifo`: a root `htb` whose default class 1:1 passes traffic, and a
//! class 1:2 whose leaf is `pfifo limit 0` (it drops everything sent to
//! it); a `u32` filter sends to 1:2 the IPv4 packets whose IP ID has its
//! `k` low bits all zero. That drops 1 packet in 2^k, deterministically by
//! IP ID, not at random: Linux gives each connected socket an incrementing
//! IP ID, so it is roughly every 2^k-th packet of a connection (a GSO
//! packet carries several TCP segments in one skb, so one drop can take a
//! burst). IPv6 and ARP are never dropped (no IP ID / not IP).
//!
//! Owns the rounding of a loss percentage to 1/2^k and the `tc` argument
//! lists (pure, no I/O); [`crate::netns`] runs them.

/// A loss rate of exactly 1/2^`bits`, applied by IP ID mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossMask {
    bits: u8,
}

/// The fewest and most IP ID bits the mask uses (50% .. 0.0015%).
pub const MIN_BITS: u8 = 1;
pub const MAX_BITS: u8 = 16;

impl LossMask {
    /// The mask nearest to `percent` (nearest power of two in ratio, i.e.
    /// `k = round(log2(100 / percent))`). `Ok(None)` for 0 (no loss).
    /// Refused: not a number, outside 0..=100, 100 (that is a cut link:
    /// use `disconnect`), above ~70.7% (would round to 1/1), below
    /// ~0.0011% (would need more than 16 bits).
    pub fn from_percent(percent: f64) -> Result<Option<LossMask>, String> {
        if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
            return Err(format!("loss {percent}%: not a percentage from 0 to 100"));
        }
        if percent == 0.0 {
            return Ok(None);
        }
        if percent == 100.0 {
            return Err(
                "loss 100% without netem: that is a cut link, use `disconnect` instead".into(),
            );
        }
        let k = (100.0 / percent).log2().round();
        if k < f64::from(MIN_BITS) {
            return Err(format!(
                "loss {percent}% without netem: the IP ID mask can drop at most 1/2 (50%); rates above 70.7% are refused"
            ));
        }
        if k > f64::from(MAX_BITS) {
            return Err(format!(
                "loss {percent}% without netem: the IP ID mask can drop at least 1/65536 (0.0015%)"
            ));
        }
        Ok(Some(LossMask { bits: k as u8 }))
    }

    /// `k`: how many low IP ID bits must be zero for a drop.
    pub fn bits(self) -> u8 {
        self.bits
    }

    /// The fraction actually dropped, 1/2^k.
    pub fn rate(self) -> f64 {
        1.0 / f64::from(1u32 << self.bits)
    }

    /// The `u32` match mask on the 16-bit IP ID.
    pub fn mask(self) -> u16 {
        ((1u32 << self.bits) - 1) as u16
    }

    /// What a run says it applied for an asked `percent`.
    pub fn describe(self, percent: f64) -> String {
        format!(
            "loss {percent}% applied as 1/{} = {:.4}%: packets whose IP ID ends in {} zero bit{} are dropped (htb + u32 + pfifo limit 0; this kernel has no netem)",
            1u32 << self.bits,
            self.rate() * 100.0,
            self.bits,
            if self.bits == 1 { "" } else { "s" }
        )
    }

    /// The `tc` argument lists (each without the leading `tc`) that put
    /// this loss, and `rate` if given (htb rate and ceil of the passing
    /// class), on `dev` in namespace `ns`. Run after deleting the root
    /// qdisc: `add` fails on leftovers rather than merging with them.
    pub fn tc_commands(self, ns: &str, dev: &str, rate: Option<&str>) -> Vec<Vec<String>> {
        let rate = rate.unwrap_or("10gbit");
        let list = |s: &[&str]| {
            let mut v: Vec<String> = vec!["-n".into(), ns.into()];
            v.extend(s.iter().map(|a| a.to_string()));
            v
        };
        let mask = format!("0x{:04x}", self.mask());
        vec![
            list(&[
                "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "1",
            ]),
            list(&[
                "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", rate,
                "ceil", rate,
            ]),
            list(&[
                "class", "add", "dev", dev, "parent", "1:", "classid", "1:2", "htb", "rate",
                "10gbit",
            ]),
            list(&[
                "qdisc", "add", "dev", dev, "parent", "1:2", "handle", "20:", "pfifo", "limit", "0",
            ]),
            // IP ID 0 passes first: the kernel sends SYN-ACKs and resets
            // (and unconnected DF datagrams) with ID 0, so the mask alone
            // would drop every one of them and no connection would open.
            list(&[
                "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "u16", "0x0000", "0xffff", "at", "4", "flowid", "1:1",
            ]),
            list(&[
                "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "2", "u32",
                "match", "u16", "0x0000", &mask, "at", "4", "flowid", "1:2",
            ]),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(p: f64) -> u8 {
        LossMask::from_percent(p).unwrap().unwrap().bits()
    }

    #[test]
    fn percent_rounds_to_nearest_power_of_two() {
        assert_eq!(bits(50.0), 1);
        assert_eq!(bits(25.0), 2);
        assert_eq!(bits(10.0), 3); // 100/10 = 10, log2 = 3.32 -> 1/8
        assert_eq!(bits(5.0), 4); // log2 20 = 4.32 -> 1/16
        assert_eq!(bits(1.0), 7); // log2 100 = 6.64 -> 1/128
        assert_eq!(bits(0.1), 10); // log2 1000 = 9.97 -> 1/1024
        assert_eq!(bits(70.0), 1);
        assert_eq!(bits(0.0016), 16);
        let m = LossMask::from_percent(1.0).unwrap().unwrap();
        assert!((m.rate() - 0.0078125).abs() < 1e-12);
        assert_eq!(m.mask(), 0x007f);
        assert_eq!(LossMask { bits: 16 }.mask(), 0xffff);
        assert!(m.describe(1.0).starts_with(
            "loss 1% applied as 1/128 = 0.7812%: packets whose IP ID ends in 7 zero bits"
        ));
    }

    #[test]
    fn edges_are_none_or_refused() {
        assert_eq!(LossMask::from_percent(0.0), Ok(None));
        for p in [100.0, 75.0, 0.001, -1.0, 101.0, f64::NAN] {
            assert!(LossMask::from_percent(p).is_err(), "{p} accepted");
        }
    }

    #[test]
    fn tc_lists_build_the_drop_class() {
        let m = LossMask::from_percent(25.0).unwrap().unwrap();
        let cmds = m.tc_commands("ns1", "eth0", Some("2mbit"));
        let joined: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            joined,
            [
                "-n ns1 qdisc add dev eth0 root handle 1: htb default 1",
                "-n ns1 class add dev eth0 parent 1: classid 1:1 htb rate 2mbit ceil 2mbit",
                "-n ns1 class add dev eth0 parent 1: classid 1:2 htb rate 10gbit",
                "-n ns1 qdisc add dev eth0 parent 1:2 handle 20: pfifo limit 0",
                "-n ns1 filter add dev eth0 parent 1: protocol ip prio 1 u32 match u16 0x0000 0xffff at 4 flowid 1:1",
                "-n ns1 filter add dev eth0 parent 1: protocol ip prio 2 u32 match u16 0x0000 0x0003 at 4 flowid 1:2",
            ]
        );
        let no_rate = m.tc_commands("ns1", "p0", None);
        assert!(no_rate[1].join(" ").ends_with("rate 10gbit ceil 10gbit"));
    }
}
