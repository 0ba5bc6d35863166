//! Passive addressing: the address a PASV reply tells a client to connect to. Behind NAT or a
//! load balancer it is not the address the server listens on; it may be a fixed IP, a host
//! name re-resolved every minute (dynamic DNS), another address for some client networks, or
//! the address the client itself connected to. EPSV needs none of this: it names only a port.

use std::fmt;
use std::io;
use std::net::{IpAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crate::cidr::Cidr;

/// How often a `--passive-address` host name is looked up again.
pub const RE_RESOLVE: Duration = Duration::from_secs(60);

/// `--passive-address`: what PASV advertises by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassiveAddress {
    /// `control`: the address the client connected to (the balancer's, when a PROXY header
    /// names it), which is what a client can reach when nothing translates addresses.
    Control,
    /// A fixed IP, e.g. a NAT's public address.
    Ip(IpAddr),
    /// A host name, looked up at start and every `RE_RESOLVE` after.
    Host(String),
}

impl FromStr for PassiveAddress {
    type Err = String;

    fn from_str(value: &str) -> Result<PassiveAddress, String> {
        if value == "control" {
            return Ok(PassiveAddress::Control);
        }
        if let Ok(ip) = value.parse() {
            return Ok(PassiveAddress::Ip(ip));
        }
        let is_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        };
        if value.len() <= 253 && value.trim_end_matches('.').split('.').all(is_label) {
            return Ok(PassiveAddress::Host(value.to_owned()));
        }
        Err(format!(
            "'{value}' is not an IP address, a host name or 'control'"
        ))
    }
}

impl fmt::Display for PassiveAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassiveAddress::Control => f.write_str("control"),
            PassiveAddress::Ip(ip) => write!(f, "{ip}"),
            PassiveAddress::Host(name) => f.write_str(name),
        }
    }
}

/// `--passive-address-for CIDR=IP`: the address clients from one network are told instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAddress {
    /// Clients in this network…
    pub network: Cidr,
    /// …are told this address.
    pub address: IpAddr,
}

impl FromStr for NetworkAddress {
    type Err = String;

    fn from_str(value: &str) -> Result<NetworkAddress, String> {
        let bad = || format!("'{value}' is not NETWORK=ADDRESS like 10.0.0.0/8=10.1.2.3");
        let (network, address) = value.split_once('=').ok_or_else(bad)?;
        Ok(NetworkAddress {
            network: network.trim().parse().map_err(|_| bad())?,
            address: address.trim().parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for NetworkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.network, self.address)
    }
}

serde_as_string!(PassiveAddress);
serde_as_string!(NetworkAddress);

/// What PASV advertises, for each client: built once per configuration generation.
#[derive(Debug)]
pub struct PassiveAddressing {
    default: Advertised,
    overrides: Vec<NetworkAddress>,
}

#[derive(Debug)]
enum Advertised {
    Control,
    Fixed(IpAddr),
    /// The latest lookup of a host name, refreshed by a thread that ends with this value.
    Resolved(Arc<RwLock<IpAddr>>),
}

impl PassiveAddressing {
    /// Resolves a host name once (an error if it does not resolve now) and starts its
    /// refresher; `None` means `control`.
    pub fn start(
        default: Option<&PassiveAddress>,
        overrides: Vec<NetworkAddress>,
    ) -> io::Result<PassiveAddressing> {
        let default = match default {
            None | Some(PassiveAddress::Control) => Advertised::Control,
            Some(PassiveAddress::Ip(ip)) => Advertised::Fixed(*ip),
            Some(PassiveAddress::Host(name)) => {
                let current = Arc::new(RwLock::new(resolve(name)?));
                let refresher = Refresher {
                    name: name.clone(),
                    current: Arc::downgrade(&current),
                };
                std::thread::Builder::new()
                    .name("passive-dns".into())
                    .stack_size(64 * 1024)
                    .spawn(move || refresher.run())?;
                Advertised::Resolved(current)
            }
        };
        Ok(PassiveAddressing { default, overrides })
    }

    /// The address for a client at `client` that connected to `control`: the first override
    /// whose network holds the client, else the default.
    pub fn for_client(&self, client: IpAddr, control: IpAddr) -> IpAddr {
        if let Some(chosen) = self
            .overrides
            .iter()
            .find(|entry| entry.network.contains(client))
        {
            return chosen.address;
        }
        match &self.default {
            Advertised::Control => control,
            Advertised::Fixed(ip) => *ip,
            Advertised::Resolved(current) => *current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        }
    }
}

/// Looks a `--passive-address` host name up again every `RE_RESOLVE`, without holding the
/// lock while it waits on DNS; ends when the configuration it serves is gone.
struct Refresher {
    name: String,
    current: Weak<RwLock<IpAddr>>,
}

impl Refresher {
    fn run(self) {
        loop {
            std::thread::sleep(RE_RESOLVE);
            if self.current.strong_count() == 0 {
                return;
            }
            let looked_up = resolve(&self.name);
            let Some(current) = self.current.upgrade() else {
                return;
            };
            match looked_up {
                Ok(ip) => {
                    let mut current = current
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    if *current != ip {
                        log::info!("passive address {} is now {ip}", self.name);
                        *current = ip;
                    }
                }
                Err(error) => log::warn!(
                    "passive address {}: lookup failed, keeping the last one: {error}",
                    self.name
                ),
            }
        }
    }
}

/// A host name's address, IPv4 first (PASV can only carry IPv4).
fn resolve(name: &str) -> io::Result<IpAddr> {
    let addresses: Vec<IpAddr> = (name, 0)
        .to_socket_addrs()?
        .map(|address| address.ip())
        .collect();
    addresses
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(addresses.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{name} has no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_reads_ips_names_and_control() {
        assert_eq!("control".parse(), Ok(PassiveAddress::Control));
        assert_eq!(
            "203.0.113.7".parse(),
            Ok(PassiveAddress::Ip("203.0.113.7".parse().unwrap()))
        );
        assert_eq!(
            "ftp.example.org".parse(),
            Ok(PassiveAddress::Host("ftp.example.org".into()))
        );
        assert!("not a name!".parse::<PassiveAddress>().is_err());
        let entry: NetworkAddress = "10.0.0.0/8=10.1.2.3".parse().unwrap();
        assert_eq!(entry.to_string(), "10.0.0.0/8=10.1.2.3");
        assert!("10.0.0.0/8".parse::<NetworkAddress>().is_err());
    }

    #[test]
    fn overrides_win_for_their_network_and_names_resolve() {
        let overrides = vec!["10.0.0.0/8=10.1.2.3".parse().unwrap()];
        let fixed = PassiveAddressing::start(
            Some(&PassiveAddress::Ip("203.0.113.7".parse().unwrap())),
            overrides,
        )
        .unwrap();
        let control: IpAddr = "192.0.2.1".parse().unwrap();
        let inside: IpAddr = "10.9.9.9".parse().unwrap();
        let outside: IpAddr = "198.51.100.4".parse().unwrap();
        assert_eq!(
            fixed.for_client(inside, control),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            fixed.for_client(outside, control),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let by_control = PassiveAddressing::start(None, Vec::new()).unwrap();
        assert_eq!(by_control.for_client(outside, control), control);
        let named =
            PassiveAddressing::start(Some(&PassiveAddress::Host("localhost".into())), Vec::new())
                .unwrap();
        assert!(named.for_client(outside, control).is_loopback());
    }
}
