//! Command-line value parsers: durations (`1s`, `500ms`, `2m`), addresses with host names
//! (`localhost:8080`), and the names of servers and scenarios, each checked when the command
//! line is read so that a typo fails at once with the list of valid names.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Parses a duration: one or more `NUMBER UNIT` parts (`1s`, `500ms`, `2m`, `1m30s`, `1.5s`),
/// units `ns`, `us` (or `µs`), `ms`, `s`, `m` (or `min`), `h`; a bare number is seconds.
pub fn duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?}: expected e.g. 1s, 500ms, 2m or 1.5");
    let s = text.trim();
    if s.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| invalid());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += number * scale;
        rest = rest[unit_len..].trim_start();
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

/// A whole number of at least 1 (connections, bytes, pipeline depth, rounds).
pub fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of at least 1, not {text:?}"
        )),
    }
}

/// An address as typed (`127.0.0.1:8080`, `localhost:8080`, `[::1]:0`) and what it resolved
/// to, in the resolver's order.
#[derive(Clone, Debug)]
pub struct Target {
    pub text: String,
    pub addrs: Vec<SocketAddr>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Resolves `HOST:PORT` (a name or an IP literal) with `ToSocketAddrs`.
pub fn target(text: &str) -> Result<Target, String> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?} (expected HOST:PORT): {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{text:?} resolved to no address"));
    }
    Ok(Target {
        text: text.to_string(),
        addrs,
    })
}

/// A server kind, checked against the list in `servers::ALL`.
pub fn server(name: &str) -> Result<String, String> {
    one_of(name, crate::servers::ALL, "server")
}

/// `name` if it is one of `valid` (as written there, case aside), else an error that lists
/// them: `unknown server "x"; valid servers: a, b`.
pub fn one_of(name: &str, valid: &[&str], what: &str) -> Result<String, String> {
    valid
        .iter()
        .find(|v| v.eq_ignore_ascii_case(name.trim()))
        .map(|v| v.to_string())
        .ok_or_else(|| {
            format!(
                "unknown {what} {name:?}; valid {what}s: {}",
                valid.join(", ")
            )
        })
}

/// The names asked for, each once in the order first given; all of `all` if none.
pub fn chosen(asked: &[String], all: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in asked {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    if out.is_empty() {
        out = all.iter().map(|s| s.to_string()).collect();
    }
    out
}

/// A scenario, by its id (`64b-x100`) or its table name (`"64B x100"`), case and `-`/space
/// insensitive; returns its index in `SCENARIOS`.
pub fn scenario(name: &str) -> Result<usize, String> {
    let norm = |s: &str| s.trim().to_lowercase().replace([' ', '_'], "-");
    let wanted = norm(name);
    crate::SCENARIOS
        .iter()
        .position(|s| norm(s.id) == wanted || norm(s.name) == wanted)
        .ok_or_else(|| {
            let valid: Vec<String> = crate::SCENARIOS
                .iter()
                .map(|s| format!("{} ({})", s.id, s.name))
                .collect();
            format!(
                "unknown scenario {name:?}; valid scenarios: {}",
                valid.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        // A bare number is seconds, as the old `--secs` took.
        assert_eq!(duration("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["", "s", "1x", "ms5", "-1s", "1.2.3s", "abc", "-3"] {
            let e = duration(bad).unwrap_err();
            assert!(e.contains("invalid duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn positives() {
        assert_eq!(positive("16"), Ok(16));
        assert!(positive("0").is_err());
        assert!(positive("-1").is_err());
        assert!(positive("x").is_err());
    }

    #[test]
    fn targets() {
        let t = target("127.0.0.1:8080").unwrap();
        assert_eq!(t.addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
        let t = target("localhost:8080").unwrap();
        assert!(
            t.addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{t:?}"
        );
        assert!(target("[::1]:0").unwrap().addrs[0].is_ipv6());
        assert!(target("127.0.0.1").unwrap_err().contains("HOST:PORT"));
    }

    #[test]
    fn chosen_names() {
        let asked = vec!["b".to_string(), "a".to_string(), "b".to_string()];
        assert_eq!(chosen(&asked, &["a", "b", "c"]), ["b", "a"]);
        assert_eq!(chosen(&[], &["a", "b"]), ["a", "b"]);
        assert_eq!(one_of("GET", &["get"], "test"), Ok("get".to_string()));
        assert_eq!(
            one_of("x", &["a", "b"], "test"),
            Err("unknown test \"x\"; valid tests: a, b".to_string())
        );
    }

    #[test]
    fn names() {
        assert_eq!(server("epoll").unwrap(), "epoll");
        let e = server("nope").unwrap_err();
        assert!(e.contains("unknown server \"nope\"") && e.contains("netpoll-pool"));
        assert_eq!(scenario("64b-x100"), Ok(0));
        assert_eq!(scenario("64B x1000"), Ok(1));
        assert_eq!(scenario("1KiB-X100"), Ok(2));
        assert_eq!(scenario("64b-x100-p16"), Ok(3));
        assert_eq!(scenario("64B x100 pipelined 16"), Ok(3));
        let e = scenario("huge").unwrap_err();
        assert!(e.contains("64b-x1000"), "{e}");
    }
}
