//! The commands: what each does to the store and the reply it writes, as Redis 7 does them.

use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use netpoll::proto::resp::{
    parse_int, write_array_len, write_bulk, write_error, write_integer, write_null, write_simple,
    Command,
};
use netpoll::proto::Output;

use crate::store::{Entry, Now, Store};

/// What the connection does after a command.
pub enum Next {
    Continue,
    /// QUIT: close once the reply went out.
    Close,
}

/// The server's settings that `CONFIG GET` reports.
pub struct Config {
    pub timeout_secs: u64,
    pub max_bulk_len: usize,
}

/// Per-connection state commands may change.
#[derive(Default)]
pub struct Client {
    pub id: u64,
    pub name: Option<Bytes>,
}

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";

/// Runs one command and writes its reply.
pub fn execute(
    store: &Store,
    config: &Config,
    client: &mut Client,
    cmd: &Command,
    out: &mut impl Output,
) -> io::Result<Next> {
    let args = Args(cmd);
    let mut name = [0u8; 16];
    let given = &args[0];
    let upper = if given.len() <= name.len() {
        let name = &mut name[..given.len()];
        name.copy_from_slice(given);
        name.make_ascii_uppercase();
        &*name
    } else {
        &b"?"[..] // no command is this long
    };
    let Some(&(_, arity)) = COMMANDS.iter().find(|(n, _)| n.as_bytes() == upper) else {
        return unknown_command(args, out).map(|()| Next::Continue);
    };
    // Redis's arity: n exactly, or -n for at least n (the name counted).
    let arity_ok = if arity >= 0 {
        args.len() == arity as usize
    } else {
        args.len() >= arity.unsigned_abs() as usize
    };
    if !arity_ok {
        let name = String::from_utf8_lossy(upper).to_lowercase();
        write_error(
            out,
            &format!("ERR wrong number of arguments for '{name}' command"),
        )?;
        return Ok(Next::Continue);
    }
    let now = &Now::default();
    match upper {
        b"PING" => match args.get(1) {
            Some(_) => write_bulk(out, &args.bytes(1))?,
            None => write_simple(out, "PONG")?,
        },
        b"ECHO" => write_bulk(out, &args.bytes(1))?,
        b"QUIT" => {
            write_simple(out, "OK")?;
            return Ok(Next::Close);
        }
        b"GET" => match store.shard(&args[1]).get(&args[1], now) {
            Some(entry) => write_bulk(out, &entry.value)?,
            None => write_null(out)?,
        },
        b"SET" => set(store, args, now, out)?,
        b"GETSET" => {
            let old = store
                .shard(&args[1])
                .set(&args[1], args.bytes(2), None, now);
            write_optional(out, old.as_ref())?;
        }
        b"MGET" => {
            write_array_len(out, args.len() - 1)?;
            for key in args.from(1) {
                match store.shard(key).get(key, now) {
                    Some(entry) => write_bulk(out, &entry.value)?,
                    None => write_null(out)?,
                }
            }
        }
        b"MSET" => {
            if args.len() % 2 == 0 {
                write_error(out, "ERR wrong number of arguments for 'mset' command")?;
            } else {
                for i in (1..args.len()).step_by(2) {
                    store
                        .shard(&args[i])
                        .set(&args[i], args.bytes(i + 1), None, now);
                }
                write_simple(out, "OK")?;
            }
        }
        b"DEL" => {
            let removed = args
                .from(1)
                .filter(|key| {
                    let mut shard = store.shard(key);
                    let live = shard.get(key, now).is_some();
                    shard.remove(key);
                    live
                })
                .count();
            write_integer(out, removed as i64)?;
        }
        b"EXISTS" => {
            let found = args
                .from(1)
                .filter(|key| store.shard(key).get(key, now).is_some())
                .count();
            write_integer(out, found as i64)?;
        }
        b"INCR" => incr_by(store, &args[1], Ok(1), now, out)?,
        b"DECR" => incr_by(store, &args[1], Ok(-1), now, out)?,
        b"INCRBY" => incr_by(store, &args[1], integer(&args[2]), now, out)?,
        b"DECRBY" => {
            let by = integer(&args[2]).and_then(|n| n.checked_neg().ok_or(NOT_INTEGER));
            incr_by(store, &args[1], by, now, out)?
        }
        b"EXPIRE" | b"PEXPIRE" => {
            let unit = if upper == b"EXPIRE" { 1000 } else { 1 };
            expire(store, args, unit, now, out)?
        }
        b"TTL" | b"PTTL" => {
            let ttl = match store.shard(&args[1]).get(&args[1], now) {
                None => -2,
                Some(Entry { expires: None, .. }) => -1,
                Some(Entry {
                    expires: Some(at), ..
                }) => {
                    let left = at.saturating_duration_since(now.get()).as_millis() as i64;
                    // TTL rounds to the nearest second, as Redis does.
                    if upper == b"TTL" {
                        (left + 500) / 1000
                    } else {
                        left
                    }
                }
            };
            write_integer(out, ttl)?;
        }
        b"DBSIZE" => write_integer(out, store.len() as i64)?,
        b"FLUSHALL" | b"FLUSHDB" => {
            let mode_ok = args.len() == 1
                || (args.len() == 2
                    && (args[1].eq_ignore_ascii_case(b"ASYNC")
                        || args[1].eq_ignore_ascii_case(b"SYNC")));
            if mode_ok {
                store.clear();
                write_simple(out, "OK")?;
            } else {
                write_error(out, SYNTAX)?;
            }
        }
        b"SELECT" => match integer(&args[1]) {
            Ok(0) => write_simple(out, "OK")?,
            Ok(_) => write_error(out, "ERR DB index is out of range")?,
            Err(e) => write_error(out, e)?,
        },
        b"COMMAND" => command(args, out)?,
        b"CLIENT" => client_command(client, args, out)?,
        b"CONFIG" => config_command(config, args, out)?,
        b"INFO" => {
            let info = format!(
                "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n\
                 netpoll:examples/resp.rs\r\n\r\n# Keyspace\r\ndb0:keys={}\r\n",
                store.len()
            );
            write_bulk(out, &Bytes::from(info))?;
        }
        _ => return unknown_command(args, out).map(|()| Next::Continue),
    }
    Ok(Next::Continue)
}

/// A command's arguments by index; arity is checked first, so an index past the end (an
/// empty slice) does not happen.
#[derive(Clone, Copy)]
pub struct Args<'a>(&'a Command);

impl<'a> Args<'a> {
    fn len(self) -> usize {
        self.0.len()
    }
    fn get(self, i: usize) -> Option<&'a [u8]> {
        self.0.get(i)
    }
    /// Argument `i` sharing the input's block.
    fn bytes(self, i: usize) -> Bytes {
        self.0.bytes(i).unwrap_or_default()
    }
    /// The arguments from `i` on.
    fn from(self, i: usize) -> impl Iterator<Item = &'a [u8]> {
        self.0.iter().skip(i)
    }
}

impl std::ops::Index<usize> for Args<'_> {
    type Output = [u8];
    fn index(&self, i: usize) -> &[u8] {
        self.0.get(i).unwrap_or_default()
    }
}

/// Names and Redis's arities (negative: at least that many).
const COMMANDS: &[(&str, i32)] = &[
    ("GET", 2),
    ("SET", -3),
    ("PING", -1),
    ("ECHO", 2),
    ("QUIT", -1),
    ("GETSET", 3),
    ("MGET", -2),
    ("MSET", -3),
    ("DEL", -2),
    ("EXISTS", -2),
    ("INCR", 2),
    ("DECR", 2),
    ("INCRBY", 3),
    ("DECRBY", 3),
    ("EXPIRE", -3),
    ("PEXPIRE", -3),
    ("TTL", 2),
    ("PTTL", 2),
    ("DBSIZE", 1),
    ("FLUSHALL", -1),
    ("FLUSHDB", -1),
    ("SELECT", 2),
    ("COMMAND", -1),
    ("CLIENT", -2),
    ("CONFIG", -2),
    ("INFO", -1),
];

/// `-ERR unknown command 'x', with args beginning with: 'a' 'b' `, as Redis words it.
fn unknown_command(args: Args<'_>, out: &mut impl Output) -> io::Result<()> {
    let mut listed = String::new();
    for arg in args.from(1) {
        if listed.len() >= 128 {
            break;
        }
        let arg = String::from_utf8_lossy(arg);
        let room = 128 - listed.len();
        listed.push('\'');
        listed.extend(arg.chars().take(room));
        listed.push_str("' ");
    }
    let name: String = String::from_utf8_lossy(&args[0])
        .chars()
        .take(128)
        .collect();
    write_error(
        out,
        &format!("ERR unknown command '{name}', with args beginning with: {listed}"),
    )
}

fn integer(arg: &[u8]) -> Result<i64, &'static str> {
    parse_int(arg).ok_or(NOT_INTEGER)
}

fn write_optional(out: &mut impl Output, entry: Option<&Entry>) -> io::Result<()> {
    match entry {
        Some(entry) => write_bulk(out, &entry.value),
        None => write_null(out),
    }
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]
fn set(store: &Store, args: Args<'_>, now: &Now, out: &mut impl Output) -> io::Result<()> {
    let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
    let mut expires = None;
    let mut i = 3;
    while i < args.len() {
        let option = &args[i];
        let is = |name: &str| option.eq_ignore_ascii_case(name.as_bytes());
        if is("NX") && !xx {
            nx = true;
        } else if is("XX") && !nx {
            xx = true;
        } else if is("GET") {
            get = true;
        } else if is("KEEPTTL") && expires.is_none() {
            keep_ttl = true;
        } else if (is("EX") || is("PX") || is("EXAT") || is("PXAT"))
            && expires.is_none()
            && !keep_ttl
            && i + 1 < args.len()
        {
            i += 1;
            let Ok(n) = integer(&args[i]) else {
                return write_error(out, NOT_INTEGER);
            };
            let at = if is("EX") {
                deadline_in(n, 1000, now)
            } else if is("PX") {
                deadline_in(n, 1, now)
            } else {
                deadline_at(n, if is("EXAT") { 1000 } else { 1 }, now)
            };
            let Some(at) = at.filter(|_| n > 0) else {
                return write_error(out, "ERR invalid expire time in 'set' command");
            };
            expires = Some(at);
        } else {
            return write_error(out, SYNTAX);
        }
        i += 1;
    }
    let key = &args[1];
    let mut shard = store.shard(key);
    if !(nx || xx || get || keep_ttl) {
        shard.set(key, args.bytes(2), expires, now);
        drop(shard);
        return write_simple(out, "OK");
    }
    let old = shard.get(key, now).cloned();
    if (nx && old.is_some()) || (xx && old.is_none()) {
        return if get {
            write_optional(out, old.as_ref())
        } else {
            write_null(out)
        };
    }
    if keep_ttl {
        expires = old.as_ref().and_then(|e| e.expires);
    }
    shard.set(key, args.bytes(2), expires, now);
    drop(shard);
    if get {
        write_optional(out, old.as_ref())
    } else {
        write_simple(out, "OK")
    }
}

/// `n` units of `unit_ms` from now; `None` on overflow.
fn deadline_in(n: i64, unit_ms: u64, now: &Now) -> Option<Instant> {
    let ms = u64::try_from(n).ok()?.checked_mul(unit_ms)?;
    now.get().checked_add(Duration::from_millis(ms))
}

/// A Unix time of `n` units of `unit_ms` as an `Instant` (in the past if it has passed).
fn deadline_at(n: i64, unit_ms: u64, now: &Now) -> Option<Instant> {
    let at_ms = u64::try_from(n).ok()?.checked_mul(unit_ms)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    if at_ms >= now_ms {
        now.get().checked_add(Duration::from_millis(at_ms - now_ms))
    } else {
        Some(
            now.get()
                .checked_sub(Duration::from_millis(now_ms - at_ms))
                .unwrap_or(now.get()),
        )
    }
}

fn incr_by(
    store: &Store,
    key: &[u8],
    by: Result<i64, &'static str>,
    now: &Now,
    out: &mut impl Output,
) -> io::Result<()> {
    let by = match by {
        Ok(by) => by,
        Err(e) => return write_error(out, e),
    };
    let mut shard = store.shard(key);
    let (current, expires) = match shard.get(key, now) {
        None => (0, None),
        Some(entry) => match parse_int(&entry.value) {
            Some(n) => (n, entry.expires),
            None => return write_error(out, NOT_INTEGER),
        },
    };
    let Some(next) = current.checked_add(by) else {
        return write_error(out, "ERR increment or decrement would overflow");
    };
    shard.set(key, Bytes::from(next.to_string()), expires, now);
    drop(shard);
    write_integer(out, next)
}

/// EXPIRE/PEXPIRE key n [NX | XX | GT | LT]
fn expire(
    store: &Store,
    args: Args<'_>,
    unit_ms: u64,
    now: &Now,
    out: &mut impl Output,
) -> io::Result<()> {
    let name = if unit_ms == 1000 { "expire" } else { "pexpire" };
    let n = match integer(&args[2]) {
        Ok(n) => n,
        Err(e) => return write_error(out, e),
    };
    let mut condition = None;
    for option in args.from(3) {
        let option = option.to_ascii_uppercase();
        match (&option[..], condition) {
            (b"NX" | b"XX" | b"GT" | b"LT", None) => condition = Some(option),
            (b"NX" | b"XX" | b"GT" | b"LT", Some(_)) => {
                return write_error(
                    out,
                    "ERR NX and XX, GT or LT options at the same time are not compatible",
                )
            }
            _ => {
                return write_error(
                    out,
                    &format!(
                        "ERR Unsupported option {}",
                        String::from_utf8_lossy(&option)
                    ),
                )
            }
        }
    }
    let at = if n <= 0 {
        Some(None) // in the past: the key goes
    } else {
        deadline_in(n, unit_ms, now).map(Some)
    };
    let Some(at) = at else {
        return write_error(out, &format!("ERR invalid expire time in '{name}' command"));
    };
    let key = &args[1];
    let mut shard = store.shard(key);
    let Some(current) = shard.get(key, now).map(|e| e.expires) else {
        return write_integer(out, 0);
    };
    // GT/LT compare with the current deadline, no deadline counting as infinite.
    let new_at = at.unwrap_or_else(|| now.get());
    let applies = match condition.as_deref() {
        None => true,
        Some(b"NX") => current.is_none(),
        Some(b"XX") => current.is_some(),
        Some(b"GT") => current.is_some_and(|c| new_at > c),
        Some(_) => current.is_none_or(|c| new_at < c),
    };
    if !applies {
        return write_integer(out, 0);
    }
    match at {
        None => {
            shard.remove(key);
        }
        Some(at) => {
            shard.set_expiry(key, Some(at), now);
        }
    }
    write_integer(out, 1)
}

/// COMMAND [COUNT | DOCS | INFO ...]: enough for redis-cli's start-up and hints.
fn command(args: Args<'_>, out: &mut impl Output) -> io::Result<()> {
    let sub = args.get(1).map(|s| s.to_ascii_uppercase());
    match sub.as_deref() {
        None | Some(b"INFO") | Some(b"DOCS") | Some(b"LIST") => write_array_len(out, 0),
        Some(b"COUNT") => write_integer(out, COMMANDS.len() as i64),
        Some(_) => unknown_subcommand(args, "COMMAND", out),
    }
}

/// CLIENT SETNAME/GETNAME/ID/SETINFO, what clients send on connecting.
fn client_command(client: &mut Client, args: Args<'_>, out: &mut impl Output) -> io::Result<()> {
    let sub = args[1].to_ascii_uppercase();
    match (&sub[..], args.len()) {
        (b"SETNAME", 3) => {
            if args[2].iter().any(|&b| b <= b' ' || b > b'~') {
                return write_error(
                    out,
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            client.name = (!args[2].is_empty()).then(|| args.bytes(2));
            write_simple(out, "OK")
        }
        (b"GETNAME", 2) => match &client.name {
            Some(name) => write_bulk(out, name),
            None => write_null(out),
        },
        (b"ID", 2) => write_integer(out, client.id as i64),
        (b"SETINFO", 4) => write_simple(out, "OK"),
        _ => unknown_subcommand(args, "CLIENT", out),
    }
}

/// CONFIG GET pattern...: the settings redis-benchmark and redis-cli ask about.
fn config_command(config: &Config, args: Args<'_>, out: &mut impl Output) -> io::Result<()> {
    if !args[1].eq_ignore_ascii_case(b"GET") || args.len() < 3 {
        return match args[1].to_ascii_uppercase().as_slice() {
            b"GET" => write_error(
                out,
                "ERR wrong number of arguments for 'config|get' command",
            ),
            _ => unknown_subcommand(args, "CONFIG", out),
        };
    }
    let settings = [
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("databases", "1".to_string()),
        ("timeout", config.timeout_secs.to_string()),
        ("proto-max-bulk-len", config.max_bulk_len.to_string()),
        ("maxmemory", "0".to_string()),
        ("io-threads", "1".to_string()),
    ];
    let matching: Vec<_> = settings
        .iter()
        .filter(|(name, _)| {
            args.from(2)
                .any(|p| glob(&p.to_ascii_lowercase(), name.as_bytes()))
        })
        .collect();
    write_array_len(out, matching.len() * 2)?;
    for (name, value) in matching {
        write_bulk(out, &Bytes::from_static(name.as_bytes()))?;
        write_bulk(out, &Bytes::from(value.clone()))?;
    }
    Ok(())
}

fn unknown_subcommand(args: Args<'_>, command: &str, out: &mut impl Output) -> io::Result<()> {
    let sub = String::from_utf8_lossy(args.get(1).map_or(&b""[..], |s| s));
    write_error(
        out,
        &format!("ERR unknown subcommand '{sub}'. Try {command} HELP."),
    )
}

/// `*` and `?` wildcards, as CONFIG GET matches parameter names (linear backtracking: a
/// pattern of many stars costs no more than one).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None; // (pattern after the star, text it resumes at)
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p + 1, t));
            p += 1;
        } else if let Some((after, resume)) = star {
            // Let the last star take one more byte and try again.
            star = Some((after, resume + 1));
            p = after;
            t = resume + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}
