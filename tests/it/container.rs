//! The container build, checked without a Docker engine: the Dockerfile's build stage copies
//! every path the build reads (Cargo.toml's declared targets, and the files that
//! `include_str!`, `include_bytes!` and `sqlx::migrate!` embed at compile time), none of
//! them is excluded by `.dockerignore`, every workspace member's manifest reaches the
//! dependency layer (cargo loads them all), and `docker-compose.yml` is valid
//! (`docker-compose config -q`, which works offline).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Deserialize)]
struct Manifest {
    package: Package,
    workspace: Option<Workspace>,
    lib: Option<Target>,
    #[serde(default)]
    bin: Vec<Target>,
    #[serde(default)]
    bench: Vec<Target>,
    #[serde(default)]
    test: Vec<Target>,
    #[serde(default)]
    example: Vec<Target>,
}

#[derive(Deserialize)]
struct Workspace {
    #[serde(default)]
    members: Vec<String>,
}

/// The manifests of the workspace's other members (cargo loads every member's manifest,
/// whichever package it builds), relative to the root.
fn member_manifests() -> BTreeSet<String> {
    let manifest: Manifest = Figment::from(Toml::file(Path::new(ROOT).join("Cargo.toml")))
        .extract()
        .expect("Cargo.toml parses");
    manifest
        .workspace
        .map(|w| w.members)
        .unwrap_or_default()
        .into_iter()
        .filter(|member| member != ".")
        .map(|member| format!("{}/Cargo.toml", member.trim_end_matches('/')))
        .collect()
}

#[derive(Deserialize)]
struct Package {
    name: String,
    build: Option<figment::value::Value>,
}

#[derive(Deserialize)]
struct Target {
    name: Option<String>,
    path: Option<String>,
}

/// Paths (relative to the repository root) that cargo reads to build the package: the
/// manifests, a build script, and every declared target (cargo refuses a manifest whose
/// declared target file is missing, whichever target is built).
fn manifest_paths() -> BTreeSet<String> {
    let manifest: Manifest = Figment::from(Toml::file(Path::new(ROOT).join("Cargo.toml")))
        .extract()
        .expect("Cargo.toml parses");
    let mut paths = BTreeSet::from(["Cargo.toml".to_owned(), "Cargo.lock".to_owned()]);
    let default = |dir: &str, t: &Target| {
        let name = t
            .name
            .as_deref()
            .expect("a target without a path has a name");
        format!("{dir}/{name}.rs")
    };
    let package = &manifest.package;
    if let Some(lib) = &manifest.lib {
        paths.insert(lib.path.clone().unwrap_or("src/lib.rs".into()));
    }
    for bin in &manifest.bin {
        let main =
            (bin.name.as_deref() == Some(package.name.as_str())).then(|| "src/main.rs".into());
        paths.insert(
            bin.path
                .clone()
                .or(main)
                .unwrap_or_else(|| default("src/bin", bin)),
        );
    }
    for (dir, targets) in [
        ("benches", &manifest.bench),
        ("tests", &manifest.test),
        ("examples", &manifest.example),
    ] {
        for t in targets {
            paths.insert(t.path.clone().unwrap_or_else(|| default(dir, t)));
        }
    }
    match package.build.as_ref().and_then(|b| b.as_str()) {
        Some(script) => drop(paths.insert(script.to_owned())),
        None if Path::new(ROOT).join("build.rs").exists() => drop(paths.insert("build.rs".into())),
        None => {}
    }
    paths
}

/// Paths embedded at compile time by the sources under `src/`, relative to the root.
fn embedded_paths() -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut dirs = vec![PathBuf::from("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(Path::new(ROOT).join(&dir)).unwrap() {
            let name = PathBuf::from(entry.unwrap().file_name());
            let path = dir.join(&name);
            if Path::new(ROOT).join(&path).is_dir() {
                dirs.push(path);
            } else if name.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(Path::new(ROOT).join(&path)).unwrap();
                paths.extend(embedded_by(&source, &dir));
            }
        }
    }
    paths
}

/// What one source file in `dir` embeds: `include_str!`/`include_bytes!` paths are relative
/// to the file, `migrate!` paths to the package root (`migrations` when none is given).
fn embedded_by(source: &str, dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (macro_name, relative_to_file) in [
        ("include_str!(", true),
        ("include_bytes!(", true),
        ("migrate!(", false),
    ] {
        for (at, _) in source.match_indices(macro_name) {
            let args = &source[at + macro_name.len()..];
            let args = &args[..args.find(')').expect("macro call closes")];
            let literal = args.trim().trim_matches('"');
            let path = match (literal.is_empty(), relative_to_file) {
                (true, _) => PathBuf::from("migrations"),
                (false, true) => dir.join(literal),
                (false, false) => PathBuf::from(literal),
            };
            found.push(normalize(&path));
        }
    }
    found
}

/// `path` without `.` and `..` components, with `/` separators.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::ParentDir => drop(parts.pop()),
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

/// The sources a `COPY`/`ADD` instruction (split into words) takes from the build context,
/// relative to it: none when it copies `--from` another stage.
fn context_sources(words: &[&str]) -> Vec<String> {
    if words.iter().any(|w| w.starts_with("--from")) {
        return Vec::new();
    }
    let args: Vec<&str> = words[1..]
        .iter()
        .copied()
        .filter(|w| !w.starts_with("--"))
        .collect();
    args[..args.len().saturating_sub(1)]
        .iter()
        .map(|s| normalize(Path::new(s)))
        .collect()
}

/// The sources of the `COPY` instructions (from the build context, not `--from` another
/// stage) in the stage that runs `cargo build`, relative to the context.
fn build_stage_copies(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let mut stages: Vec<(Vec<String>, bool)> = Vec::new();
    for line in joined.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(instruction) = words.first().map(|w| w.to_ascii_uppercase()) else {
            continue;
        };
        match instruction.as_str() {
            "FROM" => stages.push((Vec::new(), false)),
            "RUN" if line.contains("cargo build") => stages.last_mut().unwrap().1 = true,
            "COPY" | "ADD" => {
                let stage = &mut stages.last_mut().unwrap().0;
                stage.extend(context_sources(&words));
            }
            _ => {}
        }
    }
    let (copies, _) = stages
        .into_iter()
        .find(|(_, builds)| *builds)
        .expect("a stage runs cargo build");
    copies
}

/// Whether `path` is inside one of `sources` (an empty source is the whole context).
fn copied(path: &str, sources: &[String]) -> bool {
    sources
        .iter()
        .any(|s| s.is_empty() || path == s || path.starts_with(&format!("{s}/")))
}

/// Whether a `.dockerignore` pattern excludes `path`. The patterns this repository uses:
/// a directory or file (`target/`), or a suffix (`*.log`).
fn ignored(path: &str, pattern: &str) -> bool {
    let pattern = pattern.trim().trim_start_matches('/').trim_end_matches('/');
    match pattern.strip_prefix('*') {
        Some(suffix) => path.ends_with(suffix),
        None => {
            !pattern.is_empty() && (path == pattern || path.starts_with(&format!("{pattern}/")))
        }
    }
}

/// Needed paths the Dockerfile does not bring into the build stage.
fn not_copied(dockerfile: &str, dockerignore: &str, needed: &BTreeSet<String>) -> Vec<String> {
    let sources = build_stage_copies(dockerfile);
    let patterns: Vec<&str> = dockerignore
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    needed
        .iter()
        .filter(|path| !copied(path, &sources) || patterns.iter().any(|p| ignored(path, p)))
        .cloned()
        .collect()
}

fn needed_paths() -> BTreeSet<String> {
    let mut needed = manifest_paths();
    needed.extend(member_manifests());
    needed.extend(embedded_paths());
    needed
}

/// The sources of the `COPY` instructions (from the build context) that come before the
/// Dockerfile's first `cargo build`: what the dependency layer is built from.
fn copies_before_first_build(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let mut copies = Vec::new();
    for line in joined.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some("RUN") if line.contains("cargo build") => break,
            Some("COPY" | "ADD") => copies.extend(context_sources(&words)),
            _ => {}
        }
    }
    copies
}

#[test]
fn the_dependency_layer_gets_every_workspace_members_manifest() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let early = copies_before_first_build(&dockerfile);
    let missing: Vec<_> = member_manifests()
        .into_iter()
        .filter(|manifest| !copied(manifest, &early))
        .collect();
    assert!(
        missing.is_empty(),
        "cargo builds the dependency layer without {missing:?}: it would fail to load the workspace"
    );
    // The check itself: members copied only after the first build are caught.
    let late = "FROM rust AS builder\nCOPY Cargo.toml Cargo.lock ./\nRUN cargo build --release\nCOPY benches ./benches\n";
    let early = copies_before_first_build(late);
    assert!(
        member_manifests().iter().all(|m| !copied(m, &early)),
        "{early:?}"
    );
}

#[test]
fn the_dockerfile_build_stage_copies_every_path_the_build_reads() {
    let needed = needed_paths();
    for path in &needed {
        assert!(
            Path::new(ROOT).join(path).exists(),
            "{path} is read by the build but does not exist"
        );
    }
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let dockerignore =
        std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap_or_default();
    let missing = not_copied(&dockerfile, &dockerignore, &needed);
    assert!(
        missing.is_empty(),
        "the Dockerfile's build stage lacks {missing:?} (needs {needed:?})"
    );
}

/// The check itself: a Dockerfile that copies only `src/` and `lua/` misses the migrations
/// and the declared bench target, and an ignored directory counts as not copied.
#[test]
fn the_build_path_check_finds_what_a_dockerfile_leaves_out() {
    let needed = needed_paths();
    assert!(needed.contains("migrations/postgres"), "{needed:?}");
    assert!(needed.contains("lua/purchase.lua"), "{needed:?}");
    assert!(needed.contains("benches/edge.rs"), "{needed:?}");
    let partial = "FROM rust AS builder\nCOPY Cargo.toml Cargo.lock ./\nCOPY src ./src\nCOPY lua ./lua\n\
                   RUN cargo build --release\nFROM debian\nCOPY --from=builder /src/target/release/x /x\n";
    let missing = not_copied(partial, "", &needed);
    assert!(
        missing.contains(&"migrations/postgres".to_owned()),
        "{missing:?}"
    );
    assert!(
        missing.contains(&"benches/edge.rs".to_owned()),
        "{missing:?}"
    );
    assert!(!missing.contains(&"src/lib.rs".to_owned()), "{missing:?}");
    let everything = "FROM rust\nCOPY . .\nRUN cargo build\n";
    assert_eq!(not_copied(everything, "", &needed), Vec::<String>::new());
    assert!(not_copied(everything, "lua/\n", &needed).contains(&"lua/purchase.lua".to_owned()));
}

#[test]
fn the_docker_compose_file_is_valid() {
    // The default services, with the observability profile (Prometheus and Grafana, whose
    // mounted files must exist), and with the cluster profile (six Redis Cluster nodes,
    // two gateways, nginx, Prometheus scraping each gateway).
    for profile in [None, Some("observability"), Some("cluster")] {
        let mut args = vec!["-f", "docker-compose.yml"];
        if let Some(profile) = profile {
            args.extend(["--profile", profile]);
        }
        args.extend(["config", "-q"]);
        let output = Command::new("docker-compose")
            .args(&args)
            .current_dir(ROOT)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run docker-compose ({e}): install it with scripts/install-deps.sh")
            });
        assert!(
            output.status.success(),
            "docker-compose.yml is invalid with profile {profile:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for mounted in [
        "deploy/prometheus/prometheus.yml",
        "deploy/grafana/flashgate-dashboard.json",
        "deploy/grafana/provisioning/datasources/prometheus.yml",
        "deploy/grafana/provisioning/dashboards/flashgate.yml",
        "deploy/nginx/flashgate.conf",
        "deploy/prometheus/prometheus-cluster.yml",
    ] {
        assert!(
            Path::new(ROOT).join(mounted).is_file(),
            "{mounted} is missing"
        );
    }
}

/// The compose comment tells operators how a live sale changes (a live reshard, applied
/// without a restart), never to restart for it.
#[test]
fn the_compose_file_does_not_ask_for_a_restart_to_change_shards() {
    let compose = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml")).unwrap();
    assert!(!compose.contains("change a sale's shards and restart"));
    assert!(compose.contains("live reshard"));
}

/// The cluster profile's balancer passes the client's address on, and its gateways trust
/// exactly the balancer's fixed address.
#[test]
fn the_cluster_profile_balancer_forwards_the_client_address_to_gateways_that_trust_it() {
    let nginx =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/nginx/flashgate.conf")).unwrap();
    assert!(nginx.contains("X-Forwarded-For $proxy_add_x_forwarded_for"));
    let compose = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml")).unwrap();
    let address = compose
        .lines()
        .find_map(|line| line.trim().strip_prefix("ipv4_address: "))
        .expect("nginx has a fixed address");
    assert!(compose.contains(&format!("FLASHGATE_HTTP__TRUSTED_PROXIES: {address}")));
    for gateway in ["gateway-1:8080", "gateway-2:8080"] {
        assert!(nginx.contains(gateway), "nginx does not balance {gateway}");
    }
}

/// The image runs as a non-root user, and its HEALTHCHECK asks the binary itself.
#[test]
fn the_image_runs_unprivileged_with_a_healthcheck() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    assert!(
        runtime.contains("\nUSER flashgate"),
        "the runtime stage runs as root"
    );
    assert!(
        runtime.contains(r#"HEALTHCHECK"#)
            && runtime.contains(r#"CMD ["flashgate", "healthcheck"]"#),
        "no HEALTHCHECK through `flashgate healthcheck`"
    );
}

/// `flashgate healthcheck` (the image's HEALTHCHECK) succeeds against a ready gateway and
/// fails where none answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_command_passes_for_a_ready_gateway_and_fails_without_one() {
    let (_redis, app) = crate::support::app::spawn_single().await;
    let check = |gateway: String| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_flashgate"))
                .args(["healthcheck", "--gateway", &gateway])
                .status()
                .unwrap()
        })
    };
    assert!(check(app.base.clone()).await.unwrap().success());
    let nobody = format!("http://127.0.0.1:{}", crate::support::redis::free_port());
    assert!(!check(nobody).await.unwrap().success());
}

/// The shipped config's secrets are in the repository: a gateway started with them refuses
/// to run unless it is told it is a demo.
#[test]
fn the_gateway_refuses_the_demo_secrets_unless_it_is_a_demo() {
    let output = Command::new(env!("CARGO_BIN_EXE_flashgate"))
        .args([
            "serve",
            "--config",
            &format!("{ROOT}/config/flashgate.toml"),
        ])
        .env_remove("FLASHGATE_DEMO")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("demo secrets"), "{said}");
}
