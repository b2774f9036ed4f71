//! Prints the SocialCluster CRD as YAML (crds/socialcluster.yaml is this output).

fn main() -> std::process::ExitCode {
    match tinysns_operator::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: cannot serialize the CRD: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
