//! The few libc calls the bench needs: CPU pinning, the fd limit, and process CPU time.

use std::io;

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; `cpu` is bounds-checked by the macro's
    // caller below.
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cpu index too large",
        ));
    }
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: passes a valid cpu_set_t of the size given.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises the soft fd limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    // SAFETY: rlimit is plain data.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// CPU time of process `pid` (every thread, those already exited included), in nanoseconds:
/// the process's CPU clock (`clock_getcpuclockid` + `clock_gettime`, the scheduler's ns
/// runtime). Where that clock cannot be read, the sum of the first field (ns on CPU) of
/// `/proc/PID/task/*/schedstat`, which misses threads that have already exited.
pub fn cpu_nanos(pid: u32) -> io::Result<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: writes one clockid_t into `clock`.
    let rc = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) };
    if rc == 0 {
        // SAFETY: timespec is plain data; clock_gettime writes into it.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: a clock id from clock_getcpuclockid and a valid timespec.
        if unsafe { libc::clock_gettime(clock, &mut ts) } == 0 {
            return Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
        }
    }
    schedstat_nanos(pid)
}

/// The sum over `pid`'s live threads of `/proc/PID/task/TID/schedstat`'s first field.
pub fn schedstat_nanos(pid: u32) -> io::Result<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| io::Error::other(format!("unexpected schedstat {text:?}")))?;
    }
    Ok(total)
}

/// A `/proc/PID/status` field in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{field} not in status")))
}

/// Open file descriptors of `pid` (0 once it is gone).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The minimal epoll echo server: the floor the others are measured against.
pub mod epoll {
    use std::collections::HashMap;
    use std::io;
    use std::net::TcpListener;
    use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

    fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    fn ctl(epfd: RawFd, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: `event` is valid for the call.
        cvt(unsafe { libc::epoll_ctl(epfd, op, fd, &mut event) }).map(|_| ())
    }

    /// One thread, level-triggered, read then write back; leftover output waits for EPOLLOUT.
    pub fn serve(listener: TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        // SAFETY: no pointers.
        let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        let lfd = listener.as_raw_fd();
        ctl(epfd, libc::EPOLL_CTL_ADD, lfd, libc::EPOLLIN as u32)?;
        let mut pending: HashMap<RawFd, Vec<u8>> = HashMap::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: the array and its length match.
            let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in &events[..n as usize] {
                let fd = event.u64 as RawFd;
                if fd == lfd {
                    while let Ok((stream, _)) = listener.accept() {
                        stream.set_nonblocking(true)?;
                        stream.set_nodelay(true)?;
                        let fd = stream.into_raw_fd();
                        ctl(epfd, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32)?;
                    }
                    continue;
                }
                let mut close = false;
                if event.events & libc::EPOLLOUT as u32 != 0 {
                    close |= flush(epfd, fd, &mut pending)?;
                }
                let readable = (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32;
                if !close && event.events & readable != 0 && !pending.contains_key(&fd) {
                    // SAFETY: reads into our buffer, within its length.
                    let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if got == 0
                        || (got < 0
                            && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock)
                    {
                        close = true;
                    } else if got > 0 {
                        match send_all(fd, &buf[..got as usize]) {
                            Ok(sent) if sent < got as usize => {
                                // Socket full: keep the rest and wait for room.
                                pending.insert(fd, buf[sent..got as usize].to_vec());
                                ctl(
                                    epfd,
                                    libc::EPOLL_CTL_MOD,
                                    fd,
                                    (libc::EPOLLIN | libc::EPOLLOUT) as u32,
                                )?;
                            }
                            Ok(_) => {}
                            Err(_) => close = true,
                        }
                    }
                }
                if close {
                    pending.remove(&fd);
                    // SAFETY: closing an fd we own; epoll forgets it.
                    unsafe { libc::close(fd) };
                }
            }
        }
    }

    /// Sends as much of `data` as the socket takes; Err on a broken connection.
    fn send_all(fd: RawFd, data: &[u8]) -> io::Result<usize> {
        let mut sent = 0;
        while sent < data.len() {
            let rest = &data[sent..];
            // SAFETY: writes from our buffer, within its length.
            let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                return Err(e);
            }
            sent += n as usize;
        }
        Ok(sent)
    }

    /// Writes what is pending for `fd`; once drained, stops watching output. Returns true if
    /// the connection failed.
    fn flush(epfd: RawFd, fd: RawFd, pending: &mut HashMap<RawFd, Vec<u8>>) -> io::Result<bool> {
        let Some(data) = pending.get_mut(&fd) else {
            return Ok(false);
        };
        match send_all(fd, data) {
            Err(_) => return Ok(true),
            Ok(sent) => {
                data.drain(..sent);
            }
        }
        if data.is_empty() {
            pending.remove(&fd);
            ctl(epfd, libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32)?;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    /// The clock has sub-tick resolution: the first change seen is far below a 10 ms tick.
    #[test]
    fn cpu_time_in_nanoseconds() {
        let me = std::process::id();
        let first = super::cpu_nanos(me).unwrap();
        let mut next = first;
        for _ in 0..10_000_000 {
            next = super::cpu_nanos(me).unwrap();
            if next != first {
                break;
            }
        }
        assert!(next > first, "the CPU clock did not move");
        assert!(next - first < 5_000_000, "step of {} ns", next - first);
        assert!(super::schedstat_nanos(me).unwrap() > 0);
    }
}
