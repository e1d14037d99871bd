//! Running the `redis-discovery` binary: spawned with piped output, its
//! lines as they come, signals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use super::{eventually_sync, DEADLINE};

pub const BIN: &str = env!("CARGO_BIN_EXE_redis-discovery");

pub fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--redis", url])
        .args(args)
        .output()
        .expect("run the CLI")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running CLI process, killed when dropped: a test that fails must not
/// leave it running.
pub struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// A CLI process started some other way (under `sh -c` with limits).
impl From<Child> for Running {
    fn from(child: Child) -> Running {
        Running(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Already exited (the test waited for it): nothing to do.
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn spawn(url: &str, args: &[&str]) -> Running {
    let child = Command::new(BIN)
        .args(["--redis", url])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the CLI");
    Running(child)
}

/// A `register` sidecar for `orders` at `addr`, once it says it registered.
pub fn sidecar(url: &str, addr: &str) -> Running {
    let mut child = spawn(
        url,
        &[
            "register",
            "orders",
            addr,
            "--ttl",
            "30",
            "--heartbeat",
            "10",
        ],
    );
    let out = lines(&mut child);
    wait_for_line(&out, "registered");
    child
}

/// Lines of a child's stdout, as they come.
pub fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

pub fn wait_for_line(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line containing {what:?} within {DEADLINE:?}"),
        }
    }
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    eventually_sync("the child to exit", || child.try_wait().ok().flatten())
}
