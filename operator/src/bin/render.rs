//! Writes every object the operator builds to YAML files, for offline validation:
//! `render OUT_DIR [SOCIALCLUSTER.yaml ...]` writes OUT_DIR/{1x1,default,5x3,tls-open}.yaml and one
//! file per given SocialCluster manifest (example-N-<file stem>.yaml).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tinysns_operator::crd::SocialCluster;
use tinysns_operator::render;

fn run(out: &Path, inputs: &[PathBuf]) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut cases = Vec::new();
    for (name, spec) in render::standard_specs() {
        cases.push((name.to_owned(), render::object("demo", "default", spec)));
    }
    for (index, input) in inputs.iter().enumerate() {
        let text = std::fs::read_to_string(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
        // Through JSON: serde_yaml 0.9 wants YAML tags for enums, while Kubernetes (and
        // users) write the externally tagged `rabbitmq: {managed: {}}` as a plain map.
        let value: serde_json::Value =
            serde_yaml::from_str(&text).map_err(|e| format!("{} is not YAML: {e}", input.display()))?;
        let sc: SocialCluster =
            serde_json::from_value(value).map_err(|e| format!("{} is not a SocialCluster: {e}", input.display()))?;
        let stem = input
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input".to_owned());
        // The index keeps same-named manifests (e2e/ and the chart's) apart.
        cases.push((format!("example-{}-{stem}", index + 1), render::complete(sc)));
    }
    for (name, sc) in cases {
        let yaml = render::children_yaml(&sc).map_err(|e| format!("{name}: {e}"))?;
        let path = out.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some((out, inputs)) = args.split_first() else {
        eprintln!("usage: render OUT_DIR [SOCIALCLUSTER.yaml ...]");
        return ExitCode::from(2);
    };
    match run(out, inputs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("render: {e}");
            ExitCode::FAILURE
        }
    }
}
