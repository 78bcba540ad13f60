//! Where notifications may be sent: `http` and `https` URLs whose host is not on a forbidden
//! address — loopback, private, link-local, unique-local, carrier-grade NAT, unspecified,
//! multicast, broadcast — unless the operator's allow-list
//! (`continuum serve --subscription-endpoints PATTERN`) names it, so that a subscription cannot
//! be used to probe the server's own network.
//!
//! A pattern is an IP address (`127.0.0.1`, `::1`), a CIDR block (`10.20.0.0/16`), or a host
//! name (`hooks.internal`, or `*.internal` for its subdomains). Addresses public on the
//! Internet need no pattern.
//!
//! Names are checked twice: when the Subscription is written, literally (an IP literal, or
//! `localhost`: no DNS look-up runs inside a write's transaction), and before every delivery,
//! resolved — every address the name resolves to must be allowed, and the request goes to
//! the address checked (no second look-up an attacker's DNS could answer differently).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Why an endpoint is refused (fixed words; never the endpoint itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not an absolute URL.
    #[error("the endpoint is not an absolute URL")]
    NotAUrl,
    /// Another scheme than http or https.
    #[error("the endpoint must be an http or https URL")]
    Scheme,
    /// User name or password in the URL.
    #[error("the endpoint must not carry credentials in its URL")]
    Credentials,
    /// A forbidden address (see the module's documentation).
    #[error(
        "the endpoint is on an address subscriptions may not reach (loopback, private, link-local, multicast or unspecified); an operator may allow it with --subscription-endpoints"
    )]
    Forbidden,
    /// The host name does not resolve.
    #[error("the endpoint's host name does not resolve")]
    Unresolved,
}

/// One allow-list pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Block(IpAddr, u8),
    Host(String),
    Suffix(String),
}

/// The operator's allow-list of otherwise forbidden endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    patterns: Vec<Pattern>,
}

impl AllowList {
    /// The list of `patterns` (see the module's documentation); the first one that is not a
    /// pattern is returned as the error.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        for raw in patterns {
            let text = raw.as_ref().trim();
            let pattern = if let Some((address, bits)) = text.split_once('/') {
                let address: IpAddr = address.parse().map_err(|_| text.to_string())?;
                let bits: u8 = bits.parse().map_err(|_| text.to_string())?;
                if bits > if address.is_ipv4() { 32 } else { 128 } {
                    return Err(text.to_string());
                }
                Pattern::Block(address, bits)
            } else if let Ok(address) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
                Pattern::Block(address, if address.is_ipv4() { 32 } else { 128 })
            } else if let Some(suffix) = text.strip_prefix("*.") {
                if !is_host_name(suffix) {
                    return Err(text.to_string());
                }
                Pattern::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
            } else if is_host_name(text) {
                Pattern::Host(text.to_ascii_lowercase())
            } else {
                return Err(text.to_string());
            };
            list.patterns.push(pattern);
        }
        Ok(list)
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.patterns.iter().any(|p| match p {
            Pattern::Host(h) => *h == host,
            Pattern::Suffix(s) => host.ends_with(s.as_str()),
            Pattern::Block(..) => false,
        })
    }

    fn allows_address(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.patterns.iter().any(|p| match p {
            Pattern::Block(block, bits) => in_block(address, canonical(*block), *bits),
            _ => false,
        })
    }
}

fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        })
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn in_block(address: IpAddr, block: IpAddr, bits: u8) -> bool {
    match (address, block) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Whether `address` is one subscriptions may not reach without the allow-list.
pub fn is_forbidden(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(a: Ipv4Addr) -> bool {
    let [first, second, ..] = a.octets();
    a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_multicast()
        || a.is_broadcast()
        || first == 0
        // Carrier-grade NAT (100.64.0.0/10) and the reserved 240.0.0.0/4.
        || (first == 100 && (64..128).contains(&second))
        || first >= 240
}

fn forbidden_v6(a: Ipv6Addr) -> bool {
    let first = a.segments()[0];
    a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // IPv4-compatible and NAT64 forms of a forbidden IPv4 address.
        || a.to_ipv4().is_some_and(forbidden_v4)
}

/// An endpoint as parsed: scheme, host (without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given.
    pub url: reqwest::Url,
    /// Its host.
    pub host: String,
    /// Its port (the scheme's default when absent).
    pub port: u16,
}

/// Parses `text` as an endpoint: an absolute http(s) URL without credentials.
pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
    let url = reqwest::Url::parse(text).map_err(|_| EndpointError::NotAUrl)?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(EndpointError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EndpointError::Credentials);
    }
    let host = url.host_str().ok_or(EndpointError::NotAUrl)?.trim_matches(['[', ']']).to_string();
    let port = url.port_or_known_default().ok_or(EndpointError::NotAUrl)?;
    Ok(Endpoint { url, host, port })
}

/// The check when a Subscription is written: the URL's form, and its host when it is an IP
/// literal or a name of this machine (`localhost`); other names are resolved at delivery.
pub fn check_written(text: &str, allow: &AllowList) -> Result<Endpoint, EndpointError> {
    let endpoint = parse(text)?;
    if allow.allows_host(&endpoint.host) {
        return Ok(endpoint);
    }
    let lower = endpoint.host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") || lower == "localhost.localdomain" {
        return Err(EndpointError::Forbidden);
    }
    if let Ok(address) = endpoint.host.parse::<IpAddr>()
        && is_forbidden(address)
        && !allow.allows_address(address)
    {
        return Err(EndpointError::Forbidden);
    }
    Ok(endpoint)
}

/// The check before a delivery: the host resolved, every address allowed; the address to
/// connect to.
pub fn resolve(endpoint: &Endpoint, allow: &AllowList) -> Result<SocketAddr, EndpointError> {
    if let Ok(address) = endpoint.host.parse::<IpAddr>() {
        if is_forbidden(address) && !allow.allows_address(address) && !allow.allows_host(&endpoint.host) {
            return Err(EndpointError::Forbidden);
        }
        return Ok(SocketAddr::new(address, endpoint.port));
    }
    let addresses: Vec<SocketAddr> =
        (endpoint.host.as_str(), endpoint.port).to_socket_addrs().map_err(|_| EndpointError::Unresolved)?.collect();
    let first = *addresses.first().ok_or(EndpointError::Unresolved)?;
    if !allow.allows_host(&endpoint.host)
        && addresses.iter().any(|a| is_forbidden(a.ip()) && !allow.allows_address(a.ip()))
    {
        return Err(EndpointError::Forbidden);
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> AllowList {
        AllowList::default()
    }

    #[test]
    fn forbidden_addresses_are_refused_when_written() {
        for url in [
            "http://127.0.0.1:9000/hook",
            "http://127.3.4.5/hook",
            "http://10.1.2.3/hook",
            "http://172.16.0.1/hook",
            "http://192.168.1.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/hook",
            "http://224.0.0.1/hook",
            "http://100.64.0.1/hook",
            "http://[::1]/hook",
            "http://[fe80::1]/hook",
            "http://[fd00::1]/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[::]/hook",
            "http://localhost:8080/hook",
            "http://api.localhost/hook",
        ] {
            assert_eq!(check_written(url, &none()), Err(EndpointError::Forbidden), "{url}");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_when_written() {
        for url in ["https://8.8.8.8/hook", "https://hooks.example.org/a?b=c", "http://[2001:4860::8888]:8443/x"] {
            assert!(check_written(url, &none()).is_ok(), "{url}");
        }
    }

    #[test]
    fn other_schemes_and_credentials_are_refused() {
        assert_eq!(check_written("ftp://8.8.8.8/x", &none()), Err(EndpointError::Scheme));
        assert_eq!(check_written("mailto:a@b.org", &none()), Err(EndpointError::Scheme));
        assert_eq!(check_written("file:///etc/passwd", &none()), Err(EndpointError::Scheme));
        assert_eq!(check_written("/relative", &none()), Err(EndpointError::NotAUrl));
        assert_eq!(check_written("https://u:p@8.8.8.8/", &none()), Err(EndpointError::Credentials));
    }

    #[test]
    fn the_allow_list_admits_what_it_names_only() {
        let allow = AllowList::parse(&["127.0.0.1", "10.20.0.0/16", "*.internal", "hooks.lan"]).unwrap();
        assert!(check_written("http://127.0.0.1:9/x", &allow).is_ok());
        assert_eq!(check_written("http://127.0.0.2:9/x", &allow), Err(EndpointError::Forbidden));
        assert!(check_written("http://10.20.5.6/x", &allow).is_ok());
        assert_eq!(check_written("http://10.21.0.1/x", &allow), Err(EndpointError::Forbidden));
        assert!(check_written("http://a.b.internal/x", &allow).is_ok());
        assert!(check_written("http://HOOKS.lan/x", &allow).is_ok());
        assert!(resolve(&parse("http://127.0.0.1:9/x").unwrap(), &allow).is_ok());
        assert!(AllowList::parse(&["not a pattern"]).is_err());
        assert!(AllowList::parse(&["10.0.0.0/40"]).is_err());
    }

    #[test]
    fn resolved_names_are_checked_at_delivery() {
        // `localhost` resolves to loopback: refused without the allow-list, whatever its name.
        let endpoint = parse("http://localhost:9/x").unwrap();
        assert_eq!(resolve(&endpoint, &none()), Err(EndpointError::Forbidden));
        let allow = AllowList::parse(&["127.0.0.0/8", "::1"]).unwrap();
        assert!(resolve(&endpoint, &allow).is_ok());
        assert_eq!(resolve(&parse("http://10.0.0.1/x").unwrap(), &none()), Err(EndpointError::Forbidden));
    }
}
