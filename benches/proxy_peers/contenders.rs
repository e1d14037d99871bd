//! The three reverse proxies of `benches/proxy_peers.rs`: their
//! configuration (the same upstreams and weights, keepalive to the
//! upstreams, no access log, 2 workers or threads), starting them, and
//! stopping them whatever happens.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BoxError;

/// Which proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Haproxy,
    Proxy,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Nginx, Kind::Haproxy, Kind::Proxy];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Proxy => "redis-discovery proxy",
        }
    }

    /// The word that selects it on the command line.
    pub fn word(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "haproxy",
            Kind::Proxy => "proxy",
        }
    }
}

/// How every contender picks an upstream: the same policy for all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// nginx `random`, HAProxy `balance random(1)` (one draw: plain
    /// weighted random; the default of 2 draws is power-of-two-choices),
    /// the proxy's `weighted-random`.
    WeightedRandom,
    /// nginx's default smooth weighted round robin, HAProxy `roundrobin`,
    /// the proxy's `round-robin`.
    RoundRobin,
}

/// What every contender proxies to.
pub struct Setup<'a> {
    /// The `Host` every request carries; the service's name.
    pub service: &'a str,
    /// The upstreams and their weights.
    pub upstreams: &'a [(SocketAddr, u32)],
    pub policy: Policy,
    /// The Redis the proxy discovers the upstreams in.
    pub redis_url: &'a str,
    /// The `redis-discovery` binary.
    pub cli: &'a Path,
    /// Where configuration files and logs go.
    pub dir: &'a Path,
}

/// A contender, listening on `addr`; stopped when dropped.
pub struct Contender {
    pub kind: Kind,
    pub addr: SocketAddr,
    process: Process,
    log: PathBuf,
}

impl Contender {
    /// Starts it on a free loopback port and waits until it proxies a GET
    /// with `Host: SERVICE` to a 200.
    pub fn start(kind: Kind, setup: &Setup<'_>) -> Result<Contender, BoxError> {
        let port = super::support::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = setup.dir.join(format!("{}.log", kind.word()));
        let mut command = match kind {
            Kind::Nginx => nginx(addr, setup)?,
            Kind::Haproxy => haproxy(addr, setup)?,
            Kind::Proxy => proxy(addr, setup),
        };
        if let Some(wrapper) = std::env::var_os(WRAP) {
            command = wrapped(&wrapper.to_string_lossy(), &command)?;
        }
        let out = fs::File::create(&log)?;
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let process = Process::spawn(command)?;
        let contender = Contender {
            kind,
            addr,
            process,
            log,
        };
        contender.wait_ready(setup.service)?;
        Ok(contender)
    }

    /// The processes whose CPU time is the contender's: the process and,
    /// for nginx, its workers.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.process.pid()];
        pids.extend(super::measure::children(self.process.pid()));
        pids
    }

    fn wait_ready(&self, service: &str) -> Result<(), BoxError> {
        let deadline = Instant::now() + super::support::DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            match probe(self.addr, service) {
                Ok(status) if status.starts_with("HTTP/1.1 200") => return Ok(()),
                Ok(status) => last = status,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        Err(format!(
            "{} on {} did not answer 200 within {:?} (last: {last}); its log:\n{log}",
            self.kind.name(),
            self.addr,
            super::support::DEADLINE
        )
        .into())
    }
}

/// The environment variable with a command every contender is started
/// under, e.g. `valgrind --tool=callgrind --trace-children=yes`: for
/// profiling (the figures then measure the contender under the tool).
pub const WRAP: &str = "PROXY_PEERS_WRAP";

/// `command` run by `wrapper` (a program and its arguments, split on
/// whitespace), with the same arguments and environment.
fn wrapped(wrapper: &str, command: &Command) -> Result<Command, BoxError> {
    let mut words = wrapper.split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| format!("{WRAP} is set but empty"))?;
    let mut outer = Command::new(program);
    outer
        .args(words)
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => outer.env(key, value),
            None => outer.env_remove(key),
        };
    }
    Ok(outer)
}

/// One GET with `Host: SERVICE` over a fresh connection: the status line.
fn probe(addr: SocketAddr, service: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {service}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.take(4096).read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    Ok(answer.lines().next().unwrap_or("").to_owned())
}

/// nginx with its own prefix and configuration in `dir`, in the
/// foreground, a master and one worker per core.
fn nginx(addr: SocketAddr, setup: &Setup<'_>) -> Result<Command, BoxError> {
    let dir = setup.dir.join("nginx");
    fs::create_dir_all(&dir)?;
    let d = dir.display();
    let policy = match setup.policy {
        // Before `keepalive`, as nginx requires.
        Policy::WeightedRandom => "random;",
        Policy::RoundRobin => "",
    };
    let servers: String = setup
        .upstreams
        .iter()
        .map(|(a, w)| format!("        server {a} weight={w};\n"))
        .collect();
    let config = format!(
        "worker_processes {cores};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 16384;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # HAProxy and the proxy do not close a busy client connection.
    keepalive_requests 100000000;
    upstream peers {{
        {policy}
{servers}        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen {addr} default_server;
        return 404;
    }}
    server {{
        listen {addr};
        server_name {service};
        location / {{
            proxy_pass http://peers;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
",
        cores = super::measure::cores(),
        service = setup.service,
    );
    let file = dir.join("nginx.conf");
    fs::write(&file, config)?;
    let mut command = Command::new("nginx");
    command
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&file);
    Ok(command)
}

/// HAProxy in the foreground, one process of one thread per core,
/// connections to the upstreams shared and kept.
fn haproxy(addr: SocketAddr, setup: &Setup<'_>) -> Result<Command, BoxError> {
    let balance = match setup.policy {
        Policy::WeightedRandom => "random(1)",
        Policy::RoundRobin => "roundrobin",
    };
    let servers: String = setup
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, (a, w))| format!("    server u{i} {a} weight {w}\n"))
        .collect();
    let config = format!(
        "global
    nbthread {cores}
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option forwardfor
frontend peers
    bind {addr}
    use_backend peers if {{ req.hdr(host) -i {service} }}
backend peers
    balance {balance}
    http-reuse always
{servers}",
        cores = super::measure::cores(),
        service = setup.service,
    );
    let file = setup.dir.join("haproxy.cfg");
    fs::write(&file, config)?;
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(&file);
    Ok(command)
}

/// `redis-discovery proxy`, its access log off (the `access` target
/// below `warn`), as for the others.
fn proxy(addr: SocketAddr, setup: &Setup<'_>) -> Command {
    let balance = match setup.policy {
        Policy::WeightedRandom => "weighted-random",
        Policy::RoundRobin => "round-robin",
    };
    let mut command = Command::new(setup.cli);
    command
        .env("RUST_LOG", "warn,redis=error")
        .args(["--redis", setup.redis_url, "proxy", "--listen"])
        .arg(addr.to_string())
        .args(["--balance", balance]);
    command
}

/// A child process that is stopped when dropped (SIGTERM, then SIGKILL
/// after 5 s, 60 s under [`WRAP`]), and that gets SIGTERM if this process
/// dies first.
pub struct Process {
    child: Child,
}

impl Process {
    pub fn spawn(mut command: Command) -> Result<Process, BoxError> {
        // SAFETY: `prctl` is async-signal-safe and touches no memory of the
        // parent.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        Ok(Process { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.running() {
            return;
        }
        // nginx's workers outlive a master killed with SIGKILL: SIGTERM
        // first, so the master stops them.
        let children = super::measure::children(self.pid());
        if let Ok(pid) = i32::try_from(self.pid()) {
            // SAFETY: plain syscall on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        // Under a profiler, exiting (writing its data) takes longer.
        let grace = if std::env::var_os(WRAP).is_some() {
            60
        } else {
            5
        };
        let deadline = Instant::now() + Duration::from_secs(grace);
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in children {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: as above; a pid already gone gets ESRCH.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// A directory removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Result<TempDir, BoxError> {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
