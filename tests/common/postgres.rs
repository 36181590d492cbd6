//! A throwaway PostgreSQL for the cluster tests: `initdb` and `pg_ctl` from
//! the machine's PostgreSQL install, run as the `postgres` user (they refuse
//! to run as root) in a temporary directory, on a free loopback port. Also a
//! TCP relay that can cut one replica off from the database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`):
/// Debian's newest `/usr/lib/postgresql/<version>/bin`, else wherever
/// `pg_ctl` is on `PATH` (Fedora's /usr/bin, Homebrew's symlinks, resolved
/// to the directory that also holds `initdb` and `postgres`).
fn bin_dir() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    find_bin_dir(Path::new("/usr/lib/postgresql"), &path).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server programs (initdb, pg_ctl): none under /usr/lib/postgresql/*/bin \
             nor on PATH (apt-get install postgresql, dnf install postgresql-server, \
             brew install postgresql)"
        )
    })
}

/// [`bin_dir`] with its places given: Debian's versions under `debian`,
/// then each directory of `path` (a `PATH` value).
pub fn find_bin_dir(debian: &Path, path: &std::ffi::OsStr) -> Option<PathBuf> {
    let complete = |d: &Path| ["pg_ctl", "initdb"].iter().all(|t| d.join(t).is_file());
    let mut versions: Vec<PathBuf> = std::fs::read_dir(debian)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| complete(p))
        .collect();
    // Newest first: "15" after "9" (numeric, not text, order).
    versions.sort_by_key(|p| {
        let v = p
            .parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str());
        v.and_then(|v| v.split('.').next()?.parse::<u32>().ok())
    });
    if let Some(newest) = versions.pop() {
        return Some(newest);
    }
    on_path("pg_ctl", path)
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|d| complete(d))
}

/// The first `name` on `path` (a `PATH` value) that is a file.
pub fn on_path(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

fn as_postgres(bin: &std::path::Path, tool: &str, args: &[&str]) -> std::process::Output {
    let tool = bin.join(tool);
    // initdb and postgres refuse to run as root: run them as `postgres`.
    let out = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&tool)
            .args(args)
            .output()
    } else {
        Command::new(&tool).args(args).output()
    };
    out.unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    /// initdb + start. Panics with a clear message when it cannot.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let suffix: String = credgate::keygen::random_bytes::<5>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dir = std::env::temp_dir().join(format!("credgate-pg-{suffix}"));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .args(["postgres:postgres", dir.to_str().unwrap()])
            .status();
        let data = dir.join("data");
        let out = as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Postgres {
            bin,
            dir,
            port: free_port(),
        };
        pg.pg_start();
        pg.watch_owner();
        pg
    }

    /// A server shared by a whole test binary lives in a `static`, which is
    /// never dropped, and `pg_ctl` daemonizes it: without a watcher each run
    /// would leave a server running and its directory behind. A detached
    /// shell waits for this test process to end, however it ends, then stops
    /// the server and removes the directory (a no-op after `Drop` did it).
    fn watch_owner(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = format!(
            "{}'{}' -D '{}' -m immediate -w stop",
            if is_root() {
                "runuser -u postgres -- "
            } else {
                ""
            },
            pg_ctl.display(),
            self.data()
        );
        let script = format!(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf \"$2\""
        );
        let spawned = Command::new("setsid")
            .args(["sh", "-c", &script, "credgate-pg-watch"])
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        assert!(
            spawned.is_ok(),
            "cannot start the PostgreSQL watcher: {spawned:?}"
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn pg_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        let out = as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        let out = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "fast", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn restart(&self) {
        self.pg_start();
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Creates a fresh database and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url(name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP relay to PostgreSQL that a test can cut (close every relayed
/// connection and refuse new ones) and restore.
pub struct Relay {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    pub async fn start(target_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (o, g) = (open.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    continue;
                }
                let (o, g) = (o.clone(), g.clone());
                let started = g.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    let relay = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let cut = async {
                        while o.load(Ordering::SeqCst) && g.load(Ordering::SeqCst) == started {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = relay => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Relay {
            addr,
            open,
            generation,
        }
    }

    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// The database URL through this relay.
    pub fn url(&self, direct_url: &str, port: u16) -> String {
        direct_url.replace(&format!("127.0.0.1:{port}"), &self.addr.to_string())
    }
}

/// Polls `check` until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
