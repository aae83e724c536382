//! Where webhooks may point (server-side request forgery): `https://` to a public address, and
//! nothing inside the operator's network unless the operator allows it.
//!
//! A URL is checked when it is registered ([`check_url`], then [`resolve_checked`] for a name)
//! and again on every delivery, because a name's answer can change after registration (DNS
//! rebinding): the delivery client resolves through [`CheckedResolver`], which refuses the
//! whole answer when any address in it is refused, so the connection is made only to addresses
//! that were checked in that same resolution. Addresses written in the URL are never resolved;
//! [`check_url`] checks them, and the worker calls it before each request. Redirects are not
//! followed (a `3xx` is a failed attempt), and no proxy is used.
//!
//! Refused (the class named in the error): loopback, the private ranges (10/8, 172.16/12,
//! 192.168/16), link-local (169.254/16, fe80::/10), shared address space (CGNAT, 100.64/10),
//! unique-local IPv6 (fc00::/7), and the special ranges (this network 0/8, 192.0.0/24, the
//! documentation and benchmarking ranges, 240/4); IPv4-mapped and -compatible IPv6 addresses
//! are judged as their IPv4 address. `allow_private_targets` lets all of those through;
//! `allow_http_loopback` lets loopback through, over `http://` too. Multicast, broadcast and the
//! unspecified address (which Linux connects to the local host) are always refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// The operator's two exceptions to the rules above.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetRules {
    /// `http://` to a loopback address (and loopback over `https://`): development and tests.
    pub allow_http_loopback: bool,
    /// Private, loopback, link-local, CGNAT and unique-local targets (a gateway whose
    /// receivers live inside its own network).
    pub allow_private_targets: bool,
}

/// The longest URL accepted.
pub const MAX_URL_LEN: usize = 2_048;

/// What kind of address a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    Private,
    LinkLocal,
    SharedCgnat,
    UniqueLocal,
    /// This network, documentation, benchmarking, the IETF protocol block, 240/4.
    Reserved,
    Multicast,
    Broadcast,
    Unspecified,
}

impl AddressClass {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => Self::of_v6(v6),
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Self {
        let [a, b, c, _] = ip.octets();
        if ip.is_unspecified() {
            AddressClass::Unspecified
        } else if ip.is_broadcast() {
            AddressClass::Broadcast
        } else if ip.is_multicast() {
            AddressClass::Multicast
        } else if ip.is_loopback() {
            AddressClass::Loopback
        } else if ip.is_private() {
            AddressClass::Private
        } else if ip.is_link_local() {
            AddressClass::LinkLocal
        } else if a == 100 && (64..128).contains(&b) {
            AddressClass::SharedCgnat
        } else if a == 0
            || a >= 240
            || (a, b, c) == (192, 0, 0)
            || ip.is_documentation()
            || (a == 198 && (b == 18 || b == 19))
        {
            AddressClass::Reserved
        } else {
            AddressClass::Public
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Self {
        if let Some(v4) = ip.to_ipv4_mapped() {
            return Self::of_v4(v4);
        }
        let segments = ip.segments();
        // IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks).
        if segments[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
            return Self::of_v4(Ipv4Addr::new(
                (segments[6] >> 8) as u8,
                segments[6] as u8,
                (segments[7] >> 8) as u8,
                segments[7] as u8,
            ));
        }
        if ip.is_unspecified() {
            AddressClass::Unspecified
        } else if ip.is_loopback() {
            AddressClass::Loopback
        } else if ip.is_multicast() {
            AddressClass::Multicast
        } else if segments[0] & 0xffc0 == 0xfe80 {
            AddressClass::LinkLocal
        } else if segments[0] & 0xfe00 == 0xfc00 {
            AddressClass::UniqueLocal
        } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
            AddressClass::Reserved
        } else {
            AddressClass::Public
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::SharedCgnat => "shared (CGNAT)",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::Reserved => "reserved",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Unspecified => "unspecified",
        }
    }
}

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("is not an absolute URL of at most 2048 characters")]
    NotUrl,
    #[error("must use https (http only to loopback, where the operator allows it)")]
    Scheme,
    #[error("must not carry a user name or password")]
    Credentials,
    #[error("must not carry a fragment")]
    Fragment,
    #[error("points to a {} address, which webhooks may not reach", .0.as_str())]
    Refused(AddressClass),
    #[error("names a host that does not resolve")]
    Unresolvable,
}

impl TargetError {
    /// The rule a refused registration names (the problem's `rule`).
    pub fn rule(&self) -> &'static str {
        match self {
            TargetError::NotUrl | TargetError::Credentials | TargetError::Fragment => {
                "webhook-url-malformed"
            }
            TargetError::Scheme => "webhook-url-must-be-https",
            TargetError::Refused(_) => "webhook-target-not-public",
            TargetError::Unresolvable => "webhook-host-unresolvable",
        }
    }
}

impl TargetRules {
    /// Whether a connection to `ip` is allowed.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), TargetError> {
        let class = AddressClass::of(ip);
        let allowed = match class {
            AddressClass::Public => true,
            AddressClass::Multicast | AddressClass::Broadcast | AddressClass::Unspecified => false,
            AddressClass::Loopback => self.allow_http_loopback || self.allow_private_targets,
            AddressClass::Private
            | AddressClass::LinkLocal
            | AddressClass::SharedCgnat
            | AddressClass::UniqueLocal
            | AddressClass::Reserved => self.allow_private_targets,
        };
        if allowed {
            Ok(())
        } else {
            Err(TargetError::Refused(class))
        }
    }
}

/// The URL's host as an address when it is one (`[::1]` without its brackets).
fn literal_host(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// The checks that need no resolution: the URL's shape and scheme, and its host when it is an
/// address. A name is checked by [`resolve_checked`] (at registration) and by
/// [`CheckedResolver`] (on delivery).
pub fn check_url(text: &str, rules: &TargetRules) -> Result<Url, TargetError> {
    if text.len() > MAX_URL_LEN {
        return Err(TargetError::NotUrl);
    }
    let url = Url::parse(text).map_err(|_| TargetError::NotUrl)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NotUrl);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(TargetError::Fragment);
    }
    let literal = literal_host(&url);
    match url.scheme() {
        "https" => {}
        // Plain http only to loopback: the address itself, or `localhost`, whose answer the
        // resolver still checks.
        "http" if rules.allow_http_loopback => {
            let loopback = match literal {
                Some(ip) => AddressClass::of(ip) == AddressClass::Loopback,
                None => url
                    .host_str()
                    .is_some_and(|host| host.eq_ignore_ascii_case("localhost")),
            };
            if !loopback {
                return Err(TargetError::Scheme);
            }
        }
        _ => return Err(TargetError::Scheme),
    }
    if let Some(ip) = literal {
        rules.check_address(ip)?;
    }
    Ok(url)
}

/// Resolves the URL's host (an address is its own answer) and checks every address; the
/// registration check. Every address must pass: a name with one private answer is refused.
pub async fn resolve_checked(
    url: &Url,
    rules: &TargetRules,
) -> Result<Vec<SocketAddr>, TargetError> {
    let port = url.port_or_known_default().unwrap_or(443);
    if let Some(ip) = literal_host(url) {
        rules.check_address(ip)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = url.host_str().ok_or(TargetError::NotUrl)?;
    lookup(host, port, rules).await
}

async fn lookup(
    host: &str,
    port: u16,
    rules: &TargetRules,
) -> Result<Vec<SocketAddr>, TargetError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| TargetError::Unresolvable)?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    for addr in &addrs {
        rules.check_address(addr.ip())?;
    }
    Ok(addrs)
}

/// The delivery client's resolver: the system's answer, refused whole when any address in it
/// is refused, so the client connects only to addresses checked in this resolution.
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver {
    pub rules: TargetRules,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = self.rules;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the client puts the URL's port in.
            let addrs = lookup(&host, 0, &rules).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: TargetRules = TargetRules {
        allow_http_loopback: false,
        allow_private_targets: false,
    };
    const LOOPBACK: TargetRules = TargetRules {
        allow_http_loopback: true,
        allow_private_targets: false,
    };
    const PRIVATE: TargetRules = TargetRules {
        allow_http_loopback: false,
        allow_private_targets: true,
    };

    fn class(text: &str) -> AddressClass {
        AddressClass::of(text.parse().unwrap())
    }

    #[test]
    fn ipv4_and_ipv6_ranges_are_classified_and_mapped_v4_is_judged_as_v4() {
        for (ip, expected) in [
            ("93.184.216.34", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("172.32.0.1", AddressClass::Public),
            ("192.168.1.1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.254", AddressClass::SharedCgnat),
            ("100.128.0.1", AddressClass::Public),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Reserved),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("192.0.2.1", AddressClass::Reserved),
            ("198.18.0.1", AddressClass::Reserved),
            ("240.0.0.1", AddressClass::Reserved),
            // IPv6, and mapped IPv4 judged as IPv4.
            ("2606:4700::1111", AddressClass::Public),
            ("::1", AddressClass::Loopback),
            ("::", AddressClass::Unspecified),
            ("fe80::1", AddressClass::LinkLocal),
            ("fc00::1", AddressClass::UniqueLocal),
            ("fd12:3456::1", AddressClass::UniqueLocal),
            ("ff02::1", AddressClass::Multicast),
            ("2001:db8::1", AddressClass::Reserved),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::10.0.0.1", AddressClass::Private),
            ("::ffff:93.184.216.34", AddressClass::Public),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn only_https_urls_to_public_addresses_pass_by_default() {
        assert!(check_url("https://hooks.example.com/otpgate", &STRICT).is_ok());
        assert!(check_url("https://93.184.216.34:8443/x", &STRICT).is_ok());
        for url in ["http://hooks.example.com/", "ftp://example.com/"] {
            assert_eq!(check_url(url, &STRICT), Err(TargetError::Scheme), "{url}");
        }
        assert_eq!(check_url("not a url", &STRICT), Err(TargetError::NotUrl));
        assert_eq!(
            check_url("https://user:pw@example.com/", &STRICT),
            Err(TargetError::Credentials)
        );
        assert_eq!(
            check_url(
                &format!("https://example.com/{}", "a".repeat(2_100)),
                &STRICT
            ),
            Err(TargetError::NotUrl)
        );
    }

    #[test]
    fn literal_private_addresses_are_refused_unless_the_operator_allows_them() {
        for url in [
            "https://10.0.0.5/hook",
            "https://192.168.0.10/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.1.1/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://127.0.0.1/",
            "https://[::1]/",
        ] {
            assert!(
                matches!(check_url(url, &STRICT), Err(TargetError::Refused(_))),
                "{url}"
            );
            assert!(check_url(url, &PRIVATE).is_ok(), "{url}");
        }
        for url in ["https://0.0.0.0/", "https://[::]/", "https://224.0.0.1/"] {
            assert!(
                matches!(check_url(url, &PRIVATE), Err(TargetError::Refused(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn http_is_allowed_only_to_loopback_and_only_when_the_operator_says_so() {
        assert!(check_url("http://127.0.0.1:8080/hook", &LOOPBACK).is_ok());
        assert!(check_url("http://[::1]:8080/hook", &LOOPBACK).is_ok());
        assert!(check_url("http://localhost:8080/hook", &LOOPBACK).is_ok());
        assert!(check_url("https://127.0.0.1/hook", &LOOPBACK).is_ok());
        for (url, policy) in [
            ("http://127.0.0.1:8080/", &STRICT),
            ("http://10.0.0.1/", &LOOPBACK),
            ("http://example.com/", &LOOPBACK),
            // Private targets allowed does not allow plain http.
            ("http://10.0.0.1/", &PRIVATE),
        ] {
            assert_eq!(check_url(url, policy), Err(TargetError::Scheme), "{url}");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let url = check_url("https://localhost/hook", &STRICT).expect("a name passes the shape");
        assert_eq!(
            resolve_checked(&url, &STRICT).await,
            Err(TargetError::Refused(AddressClass::Loopback))
        );
        let allowed = resolve_checked(&url, &LOOPBACK).await.unwrap();
        assert!(allowed.iter().all(|addr| addr.ip().is_loopback()));
        assert!(allowed.iter().all(|addr| addr.port() == 443));
    }

    #[tokio::test]
    async fn the_delivery_resolver_refuses_names_that_resolve_inside() {
        let strict = CheckedResolver { rules: STRICT };
        let refused = strict.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err());
        let loopback = CheckedResolver { rules: LOOPBACK };
        let addrs: Vec<SocketAddr> = loopback
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
    }
}
