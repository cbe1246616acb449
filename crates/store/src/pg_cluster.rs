//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` once into a cached template,
//! then a copy per cluster in a temporary directory, started with `pg_ctl` on a free loopback
//! port and stopped (immediately) when dropped. Runs the server binaries as the `postgres` user
//! when started as root, as `initdb` refuses root. If no server binaries are installed and we are
//! root, installs Debian's `postgresql` package first, so a fresh machine needs nothing by hand.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running throwaway cluster. Trust authentication on 127.0.0.1 only.
#[derive(Debug)]
pub struct TestCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    root: bool,
    /// Extra server settings (`-c name=value …`).
    settings: String,
    _dir: tempfile::TempDir,
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// The newest installed PostgreSQL server's bin directory (`FORLOP_PG_BINDIR` overrides).
fn server_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FORLOP_PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Finds the server binaries, installing Debian's package when they are missing and we may.
fn ensure_server(root: bool) -> io::Result<PathBuf> {
    if let Some(bin) = server_bin() {
        return Ok(bin);
    }
    if !root {
        return Err(other("PostgreSQL server binaries not found under /usr/lib/postgresql; install Debian's `postgresql` package or set FORLOP_PG_BINDIR".into()));
    }
    // One installer at a time, across test processes.
    let lock = std::fs::File::create(std::env::temp_dir().join("forlop-pg-install.lock"))?;
    lock.lock()?;
    if let Some(bin) = server_bin() {
        return Ok(bin);
    }
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "postgresql"][..]] {
        let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()?;
        if !status.success() {
            return Err(other(format!("apt-get {} failed: {status}", args.join(" "))));
        }
    }
    server_bin().ok_or_else(|| other("postgresql installed, but no initdb under /usr/lib/postgresql".into()))
}

fn run(root: bool, program: &Path, args: &[&str]) -> io::Result<()> {
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).output()?;
    if !out.status.success() {
        return Err(other(format!(
            "{} {} failed: {}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn chown_to_postgres(root: bool, path: &Path) -> io::Result<()> {
    if root {
        let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status()?;
        if !status.success() {
            return Err(other(format!("chown {} failed", path.display())));
        }
    }
    Ok(())
}

/// A test CA and a server certificate for 127.0.0.1 signed by it (in `data`, key mode 0600);
/// returns the CA certificate's path.
fn make_certificates(dir: &Path, data: &Path) -> io::Result<PathBuf> {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls)?;
    let openssl = |args: &[&str]| -> io::Result<()> {
        let out = Command::new("openssl").args(args).current_dir(&tls).output()?;
        if !out.status.success() {
            return Err(other(format!("openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr))));
        }
        Ok(())
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=forlop test CA",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    std::fs::write(tls.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ])?;
    for f in ["server.crt", "server.key"] {
        std::fs::copy(tls.join(f), data.join(f))?;
    }
    std::fs::set_permissions(data.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(tls.join("ca.crt"))
}

fn append(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(text.as_bytes())
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TestCluster {
    /// Starts a fresh cluster. `cache` keeps the `initdb` template between runs (a test's
    /// `CARGO_TARGET_TMPDIR`, say).
    pub fn start(cache: &Path) -> io::Result<TestCluster> {
        Self::start_configured(cache, false).map(|(cluster, _)| cluster)
    }

    /// A cluster that offers TLS only with a certificate for 127.0.0.1 signed by a fresh test CA
    /// (made with the `openssl` command); returns it and the CA certificate's PEM file.
    pub fn start_with_tls(cache: &Path) -> io::Result<(TestCluster, PathBuf)> {
        let (cluster, ca) = Self::start_configured(cache, true)?;
        Ok((cluster, ca.expect("a CA when TLS is asked for")))
    }

    /// A cluster that archives every finished WAL segment into `archive_dir()` (`wal_level`
    /// replica, `archive_mode` on), for base-backup and point-in-time recovery drills.
    pub fn start_archiving(cache: &Path) -> io::Result<TestCluster> {
        Self::start_with(cache, false, true).map(|(cluster, _)| cluster)
    }

    /// Where an archiving cluster puts its WAL segments.
    pub fn archive_dir(&self) -> PathBuf {
        self._dir.path().join("archive")
    }

    /// `pg_basebackup` of the running cluster (WAL streamed alongside) into a new directory.
    pub fn base_backup(&self) -> io::Result<tempfile::TempDir> {
        let dir = tempfile::Builder::new().prefix("forlop-pg-base-").tempdir()?;
        chown_to_postgres(self.root, dir.path())?;
        let base = dir.path().join("base");
        let base_arg = base.to_str().ok_or_else(|| other("non-UTF-8 path".into()))?;
        let port = self.port.to_string();
        run(
            self.root,
            &self.bin.join("pg_basebackup"),
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", base_arg, "-X", "stream", "--no-sync"],
        )?;
        Ok(dir)
    }

    /// A new cluster recovered from `base` (a `base_backup` of this one) with this cluster's WAL
    /// archive, to `recovery_target_time` (PostgreSQL's syntax: `2026-03-01 12:00:00.5+00`), then
    /// promoted. No connection is accepted before the promotion (`hot_standby` off), so the
    /// cluster is writable once this returns.
    pub fn recover_to(&self, base: &Path, target_time: &str) -> io::Result<TestCluster> {
        let dir = tempfile::Builder::new().prefix("forlop-pg-").tempdir()?;
        let data = dir.path().join("data");
        let status = Command::new("cp").arg("-a").arg(base.join("base")).arg(&data).status()?;
        if !status.success() {
            return Err(other(format!("copying {} failed", base.display())));
        }
        let archive = self.archive_dir();
        let archive = archive.to_str().ok_or_else(|| other("non-UTF-8 path".into()))?;
        let settings = format!(
            "restore_command = 'cp {archive}/%f %p'\nrecovery_target_time = '{target_time}'\n\
             recovery_target_action = 'promote'\narchive_mode = off\nhot_standby = off\n"
        );
        append(&data.join("postgresql.auto.conf"), &settings)?;
        std::fs::write(data.join("recovery.signal"), "")?;
        chown_to_postgres(self.root, dir.path())?;
        let mut cluster =
            TestCluster { bin: self.bin.clone(), data, port: 0, root: self.root, settings: String::new(), _dir: dir };
        cluster.start_on_a_free_port()?;
        // pg_ctl returns once the server runs, in recovery: wait for the promotion.
        let port = cluster.port.to_string();
        let promoted =
            ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-tAc", "SELECT 1 / (NOT pg_is_in_recovery())::int"];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while let Err(e) = run(self.root, &self.bin.join("psql"), &promoted) {
            if std::time::Instant::now() > deadline {
                return Err(other(format!("the recovered cluster was not promoted within 60 s: {e}")));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(cluster)
    }

    fn start_configured(cache: &Path, tls: bool) -> io::Result<(TestCluster, Option<PathBuf>)> {
        Self::start_with(cache, tls, false)
    }

    fn start_with(cache: &Path, tls: bool, archiving: bool) -> io::Result<(TestCluster, Option<PathBuf>)> {
        let root = is_root();
        let bin = ensure_server(root)?;
        let version = bin.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("pg").to_owned();
        let template = cache.join(format!("pg-template-{version}"));
        if !template.join("PG_VERSION").exists() {
            std::fs::create_dir_all(cache)?;
            let building = tempfile::Builder::new().prefix("pg-template-").tempdir_in(cache)?;
            let data = building.path().join("data");
            chown_to_postgres(root, building.path())?;
            let data_arg = data.to_str().ok_or_else(|| other("non-UTF-8 path".into()))?;
            run(
                root,
                &bin.join("initdb"),
                &["-D", data_arg, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            )?;
            // Another process may have finished first; either template is as good.
            if std::fs::rename(&data, &template).is_err() && !template.join("PG_VERSION").exists() {
                return Err(other(format!("could not place the template at {}", template.display())));
            }
        }
        let dir = tempfile::Builder::new().prefix("forlop-pg-").tempdir()?;
        let data = dir.path().join("data");
        let status = Command::new("cp").arg("-a").arg(&template).arg(&data).status()?;
        if !status.success() {
            return Err(other(format!("copying {} failed", template.display())));
        }
        let (mut settings, mut ca) = (String::new(), None);
        if tls {
            ca = Some(make_certificates(dir.path(), &data)?);
            let data = data.to_str().ok_or_else(|| other("non-UTF-8 path".into()))?;
            settings = format!(" -c ssl=on -c ssl_cert_file={data}/server.crt -c ssl_key_file={data}/server.key");
        }
        if archiving {
            let archive = dir.path().join("archive");
            std::fs::create_dir_all(&archive)?;
            let archive = archive.to_str().ok_or_else(|| other("non-UTF-8 path".into()))?;
            let conf = format!(
                "wal_level = replica\narchive_mode = on\narchive_command = 'test ! -f {archive}/%f && cp %p {archive}/%f'\n"
            );
            append(&data.join("postgresql.auto.conf"), &conf)?;
        }
        chown_to_postgres(root, dir.path())?;
        let mut cluster = TestCluster { bin, data, port: 0, root, settings, _dir: dir };
        cluster.start_on_a_free_port()?;
        Ok((cluster, ca))
    }

    /// A free port can be taken between choosing and binding it: tries a few.
    fn start_on_a_free_port(&mut self) -> io::Result<()> {
        let mut last = None;
        for _ in 0..5 {
            self.port = free_port()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
        let error = last.map_or_else(|| "postgres did not start".to_owned(), |e| e.to_string());
        Err(other(format!("{error}\nserver.log:\n{}", tail.join("\n"))))
    }

    fn pg_ctl_start(&self) -> io::Result<()> {
        let data = self.data.to_str().ok_or_else(|| other("non-UTF-8 path".into()))?;
        let log = format!("{data}/server.log");
        let options =
            format!("-p {} -c listen_addresses=127.0.0.1 -k {data} -c max_connections=200{}", self.port, self.settings);
        run(self.root, &self.bin.join("pg_ctl"), &["-D", data, "-l", &log, "-w", "-t", "60", "-o", &options, "start"])
    }

    /// Stops the server at once (`immediate`: as a crash would), keeping its data.
    pub fn stop(&self) -> io::Result<()> {
        let data = self.data.to_str().ok_or_else(|| other("non-UTF-8 path".into()))?;
        run(self.root, &self.bin.join("pg_ctl"), &["-D", data, "-m", "immediate", "-w", "stop"])
    }

    /// Starts the server again on the same port after `stop`.
    pub fn restart(&self) -> io::Result<()> {
        self.pg_ctl_start()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `db` (`postgres` always exists).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's bin directory (psql, pg_dump, …).
    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
