//! `Cidr`: a network written `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a network of
//! one), as flags and config values take it; membership ignores the `::ffff:` form of IPv4.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// An IPv4 or IPv6 network, for trust and allow/deny lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl Cidr {
    /// True when `ip` (IPv4 also in its `::ffff:` form) is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&crate::data::canonical(ip))
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(value: &str) -> Result<Cidr, String> {
        let value = value.trim();
        value
            .parse::<IpNet>()
            .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
            .map(|net| Cidr(net.trunc()))
            .map_err(|_| format!("'{value}' is not a network like 10.0.0.0/8 or an address"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

serde_as_string!(Cidr);

/// Allow and deny lists: who may connect (globally) or log in (per user).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRules {
    /// When not empty, only these networks.
    pub allow: Vec<Cidr>,
    /// Never these networks (deny wins over allow).
    pub deny: Vec<Cidr>,
}

impl AddressRules {
    /// True when `ip` passes both lists.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|net| net.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|net| net.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_bare_addresses() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.200.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_all() {
        let open = AddressRules::default();
        assert!(open.permits("192.0.2.1".parse().unwrap()));
        let rules = AddressRules {
            allow: vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            deny: vec!["192.0.2.66".parse().unwrap()],
        };
        assert!(rules.permits("192.0.2.1".parse().unwrap()));
        assert!(rules.permits("2001:db8::1".parse().unwrap()));
        assert!(!rules.permits("192.0.2.66".parse().unwrap()));
        assert!(!rules.permits("198.51.100.1".parse().unwrap()));
    }
}
