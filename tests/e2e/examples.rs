//! `examples/` (CI pipelines, the Kubernetes Job) and the `Containerfile`: the YAML parses,
//! the jobs fan out per pack and per image, keep SHA256SUMS with their artifacts, end with
//! `xspack verify`, and every `xspack` and `just` command they run exists.

use serde_yaml::Value;

use crate::common::repo_root;
use crate::guide::{commands, is_xspack_command, just_recipes};

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every string under `value` (scripts are strings or lists of strings).
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Checks the shell in `scripts`: each `xspack` command is a real subcommand, each `just`
/// command a real recipe. Returns the xspack subcommands used (`pack build`, ...).
fn check_scripts(file: &str, scripts: &[String]) -> Vec<String> {
    let recipes = just_recipes();
    let mut used = Vec::new();
    for script in scripts {
        for words in commands(script) {
            // The program of a command: the first word, or the one after `do`/`then`.
            let is_program = |i: usize| {
                (words[i] == "xspack" || words[i].ends_with("/xspack"))
                    && (i == 0 || ["do", "then", "else"].contains(&words[i - 1].as_str()))
            };
            let Some(at) = (0..words.len()).find(|&i| is_program(i)) else {
                if words[0] == "just" {
                    assert!(recipes.contains(&words[1]), "{file}: no just recipe {}", words[1]);
                }
                continue;
            };
            let rest = &words[at + 1..];
            assert!(is_xspack_command(rest), "{file}: {words:?} is not an xspack command");
            let sub: Vec<&str> = rest
                .iter()
                .map(String::as_str)
                .filter(|w| !w.starts_with('-'))
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
                .take(2)
                .collect();
            used.push(sub.join(" "));
        }
    }
    used
}

fn repo_packs() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pack.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn github_actions_fans_out_and_verifies() {
    let file = "examples/ci/github-actions.yml";
    let doc = load(file);
    let jobs = doc["jobs"].as_mapping().expect("jobs");
    for job in ["pack", "image"] {
        assert!(doc["jobs"][job]["strategy"]["matrix"].is_mapping(), "{file}: {job} matrix");
        let mut paths = Vec::new();
        strings(&doc["jobs"][job]["steps"], &mut paths);
        assert!(
            paths.iter().any(|p| p.contains("/SHA256SUMS")),
            "{file}: {job} uploads SHA256SUMS"
        );
    }
    assert!(
        doc["jobs"]["pack"]["strategy"]["matrix"]["pack"]
            .as_str()
            .unwrap()
            .contains("needs.matrix.outputs.packs"),
        "{file}: the pack matrix comes from xspack pack list"
    );
    let needs: Vec<&str> = doc["jobs"]["verify"]["needs"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(needs, ["pack", "image"], "{file}");
    let mut scripts = Vec::new();
    for (_, job) in jobs {
        for step in job["steps"].as_sequence().unwrap() {
            if let Some(run) = step["run"].as_str() {
                scripts.push(run.to_owned());
            }
        }
    }
    let used = check_scripts(file, &scripts);
    for sub in ["pack list", "pack build", "pack verify", "image build", "verify"] {
        assert!(used.iter().any(|u| u == sub), "{file}: no xspack {sub} ({used:?})");
    }
}

#[test]
fn gitlab_ci_fans_out_over_the_real_packs_and_verifies() {
    let file = "examples/ci/gitlab-ci.yml";
    let doc = load(file);
    let stages: Vec<&str> =
        doc["stages"].as_sequence().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(stages.last(), Some(&"verify"), "{file}");
    let mut listed: Vec<String> = doc["pack"]["parallel"]["matrix"][0]["PACK"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(doc["xspack"]["variables"]["PACKS"].as_str().unwrap(), listed.join(" "));
    listed.sort();
    assert_eq!(listed, repo_packs(), "{file}: the PACK matrix must list packs/");
    assert!(doc["image"]["parallel"]["matrix"].is_sequence(), "{file}: image matrix");
    for job in ["pack", "image"] {
        let mut paths = Vec::new();
        strings(&doc[job]["artifacts"], &mut paths);
        assert!(paths.iter().any(|p| p.ends_with("/SHA256SUMS")), "{file}: {job} keeps SHA256SUMS");
    }
    assert_eq!(doc["verify"]["stage"], "verify");
    let mut scripts = Vec::new();
    for (name, job) in doc.as_mapping().unwrap() {
        if name.as_str().is_some_and(|n| !["stages", "variables"].contains(&n)) {
            strings(&job["script"], &mut scripts);
        }
    }
    let used = check_scripts(file, &scripts);
    for sub in ["pack list", "pack build", "pack verify", "image build", "verify"] {
        assert!(used.iter().any(|u| u == sub), "{file}: no xspack {sub} ({used:?})");
    }
}

#[test]
fn kubernetes_job_builds_and_verifies_unprivileged() {
    let file = "examples/k8s/job.yaml";
    let doc = load(file);
    assert_eq!(doc["kind"], "Job");
    assert_eq!(doc["apiVersion"], "batch/v1");
    let pod = &doc["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    let mut scripts = Vec::new();
    strings(&container["args"], &mut scripts);
    let used = check_scripts(file, &scripts);
    assert_eq!(used, ["pack build", "verify"], "{file}");
}

#[test]
fn containerfile_is_multi_stage_on_debian_slim() {
    let text = std::fs::read_to_string(repo_root().join("Containerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].ends_with(" AS build") && froms[0].contains("bookworm"), "{}", froms[0]);
    assert!(froms[1].contains("debian:bookworm-slim"), "{}", froms[1]);
    assert!(text.contains("COPY --from=build /src/target/release/xspack /usr/local/bin/xspack"));
    assert!(text.contains("cargo build --release --locked -p xspack-cli"));
    assert!(text.contains("ENTRYPOINT [\"xspack\"]"));
    // The GRUB files guest builds link from, as scripts/oracles names them.
    let oracles = std::fs::read_to_string(repo_root().join("scripts/oracles")).unwrap();
    for pkg in ["grub-common", "grub-pc-bin", "grub-efi-amd64-bin"] {
        assert!(oracles.contains(pkg) && text.contains(pkg), "{pkg}");
    }
}

#[test]
fn just_matrix_prints_the_pack_list() {
    let text = std::fs::read_to_string(repo_root().join("justfile")).unwrap();
    assert!(just_recipes().iter().any(|r| r == "matrix"));
    assert!(text.contains("xspack --json pack list packs"));
}
