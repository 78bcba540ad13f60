//! Who is on the other end of an MLLP connection: the listener's allow-list, built from the
//! inbound partners in the message log ([`store::InboundPartner`], `continuum hl7 inbound`).
//!
//! - A connection is admitted only when its peer address lies in an address or CIDR block of a
//!   registered partner (the most specific block wins when several match); it is then handled
//!   as that partner's ([`Peer`]): its messages are logged and de-duplicated under the
//!   partner's name, and only the destructive events the partner is allowed are applied.
//! - While no partner is registered, only loopback peers are admitted (a development and test
//!   set-up on one machine), as [`LOOPBACK_PARTNER`], which may send no destructive event.
//!   Once any partner is registered, loopback peers are admitted only if a partner lists them.
//!
//! A peer's identity is its network address, never what its messages claim (MSH-3/MSH-4).

use std::net::IpAddr;
use store::InboundPartner;

/// The identity of loopback peers admitted while no inbound partner is registered. Partner
/// names cannot take this form (see [`valid_name`]).
pub const LOOPBACK_PARTNER: &str = "(loopback)";

/// The trigger events that remove or move data, each applied only for partners allowed it:
/// `A40` merges two patients (the prior one is retired and its records move to the
/// survivor), `A11` cancels an admission, `A13` cancels a discharge, `S15` cancels an
/// appointment.
pub const DESTRUCTIVE_EVENTS: &[&str] = &["A40", "A11", "A13", "S15"];

/// The sending partner of a connection, as the listener established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The partner's name (or [`LOOPBACK_PARTNER`]).
    pub partner: String,
    /// The destructive events ([`DESTRUCTIVE_EVENTS`]) it may send.
    pub allowed_events: Vec<String>,
}

impl Peer {
    /// A peer named `partner` allowed the destructive `events`.
    pub fn new(partner: &str, events: &[&str]) -> Peer {
        Peer { partner: partner.to_string(), allowed_events: events.iter().map(|e| e.to_string()).collect() }
    }

    /// Whether it may send the destructive trigger `event`.
    pub fn may_send(&self, event: &str) -> bool {
        self.allowed_events.iter().any(|e| e == event)
    }
}

/// Why an address or a partner could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartnerError {
    /// Not an IP address or a CIDR block.
    #[error("`{0}` is not an IP address or a CIDR block (10.1.2.3, 10.1.0.0/16, fd00::/8)")]
    Address(String),
    /// A name with characters other than letters, digits, `.`, `-` and `_`.
    #[error("a partner name is letters, digits, '.', '-' and '_' (at most 64)")]
    Name,
    /// A destructive event that is not one of [`DESTRUCTIVE_EVENTS`].
    #[error("`{0}` is not a destructive event that can be allowed ({events})", events = DESTRUCTIVE_EVENTS.join(", "))]
    Event(String),
}

/// An IP address block: an address and the number of leading bits that must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    address: IpAddr,
    prefix: u8,
}

impl Net {
    /// Parses `10.1.2.3`, `10.1.0.0/16`, `::1` or `fd00::/8` (a bare address is a block of
    /// one).
    pub fn parse(text: &str) -> Result<Net, PartnerError> {
        let bad = || PartnerError::Address(text.chars().take(64).collect());
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let address = address.to_canonical();
        let width = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= width).ok_or_else(bad)?,
            None => width,
        };
        Ok(Net { address, prefix })
    }

    /// Whether `ip` lies in the block (an IPv4-mapped IPv6 address counts as its IPv4 one).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.address.is_ipv4() || self.prefix == 0 {
            return ip.is_ipv4() == self.address.is_ipv4();
        }
        let mask = u128::MAX << (128 - u32::from(self.prefix));
        bits(ip) & mask == bits(self.address) & mask
    }

    /// The number of leading bits that must match.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

/// Whether `name` may name an inbound partner: 1 to 64 of letters, digits, `.`, `-`, `_`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Checks a partner before it is stored: its name, each address and each allowed event.
pub fn check_partner(partner: &InboundPartner) -> Result<(), PartnerError> {
    if !valid_name(&partner.name) {
        return Err(PartnerError::Name);
    }
    for address in &partner.addresses {
        Net::parse(address)?;
    }
    if let Some(event) = partner.allowed_events.iter().find(|e| !DESTRUCTIVE_EVENTS.contains(&e.as_str())) {
        return Err(PartnerError::Event(event.chars().take(16).collect()));
    }
    Ok(())
}

/// The listener's allow-list.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    blocks: Vec<(Net, usize)>,
    partners: Vec<InboundPartner>,
}

impl AllowList {
    /// The allow-list of `partners` (addresses that do not parse are left out: they admit
    /// nobody).
    pub fn new(partners: Vec<InboundPartner>) -> AllowList {
        let mut blocks = Vec::new();
        for (i, partner) in partners.iter().enumerate() {
            for address in &partner.addresses {
                match Net::parse(address) {
                    Ok(net) => blocks.push((net, i)),
                    Err(_) => {
                        tracing::warn!(partner = %partner.name, "an inbound partner's address is not valid; ignored")
                    }
                }
            }
        }
        AllowList { blocks, partners }
    }

    /// The peer a connection from `ip` is, or `None` when it is not admitted.
    pub fn admit(&self, ip: IpAddr) -> Option<Peer> {
        if self.partners.is_empty() {
            return ip.to_canonical().is_loopback().then(|| Peer::new(LOOPBACK_PARTNER, &[]));
        }
        let (_, i) = self.blocks.iter().filter(|(net, _)| net.contains(ip)).max_by_key(|(net, _)| net.prefix())?;
        let partner = self.partners.get(*i)?;
        Some(Peer { partner: partner.name.clone(), allowed_events: partner.allowed_events.clone() })
    }

    /// The peer named `name` (for replays of its messages): a registered partner with its
    /// current permissions, else a peer allowed nothing destructive.
    pub fn named(&self, name: &str) -> Peer {
        match self.partners.iter().find(|p| p.name == name) {
            Some(p) => Peer { partner: p.name.clone(), allowed_events: p.allowed_events.clone() },
            None => Peer::new(name, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn partner(name: &str, addresses: &[&str], events: &[&str]) -> InboundPartner {
        InboundPartner {
            name: name.into(),
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            allowed_events: events.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let net = Net::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        assert!(!net.contains(ip("fd00::1")));
        assert!(Net::parse("10.1.2.3").unwrap().contains(ip("10.1.2.3")));
        assert!(!Net::parse("10.1.2.3").unwrap().contains(ip("10.1.2.4")));
        assert!(Net::parse("fd00::/8").unwrap().contains(ip("fd12::5")));
        assert!(Net::parse("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
        assert!(!Net::parse("0.0.0.0/0").unwrap().contains(ip("::2")));
        for bad in ["", "10.1.2", "10.1.2.3/33", "fd00::/129", "host.example", "10.0.0.0/x"] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_partners_only_loopback_is_admitted() {
        let none = AllowList::new(Vec::new());
        assert_eq!(none.admit(ip("127.0.0.1")), Some(Peer::new(LOOPBACK_PARTNER, &[])));
        assert_eq!(none.admit(ip("::1")).map(|p| p.partner), Some(LOOPBACK_PARTNER.to_string()));
        assert_eq!(none.admit(ip("10.0.0.1")), None);
    }

    #[test]
    fn partners_are_found_by_the_most_specific_block() {
        let list = AllowList::new(vec![
            partner("engine", &["10.0.0.0/8"], &[]),
            partner("adt", &["10.1.2.3", "not an address"], &["A40"]),
        ]);
        assert_eq!(list.admit(ip("10.1.2.3")), Some(Peer::new("adt", &["A40"])));
        assert_eq!(list.admit(ip("10.1.2.4")), Some(Peer::new("engine", &[])));
        assert_eq!(list.admit(ip("127.0.0.1")), None, "loopback needs an entry once partners exist");
        assert_eq!(list.admit(ip("192.0.2.1")), None);
        assert!(list.named("adt").may_send("A40"));
        assert!(!list.named("engine").may_send("A40"));
        assert!(!list.named("gone").may_send("A40"));
    }

    #[test]
    fn partners_are_checked_before_they_are_stored() {
        assert!(check_partner(&partner("lab-1", &["10.0.0.1"], &["A40", "S15"])).is_ok());
        assert_eq!(check_partner(&partner("(loopback)", &[], &[])), Err(PartnerError::Name));
        assert!(matches!(check_partner(&partner("lab", &["10.0.0.300"], &[])), Err(PartnerError::Address(_))));
        assert!(matches!(check_partner(&partner("lab", &[], &["A01"])), Err(PartnerError::Event(_))));
    }
}
