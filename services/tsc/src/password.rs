//! Where tsc gets a password: a file (`--password-file`), the environment
//! ([`ENV`], for scripts), or the terminal without echo.

use std::path::Path;

/// The environment variable a script sets to pass the password.
pub const ENV: &str = "TINYSNS_PASSWORD";

/// The password from `file`, else [`ENV`], else a prompt on the terminal.
pub fn read(file: Option<&Path>, prompt: &str) -> Result<String, String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_string());
    }
    if let Ok(password) = std::env::var(ENV) {
        return Ok(password);
    }
    rpassword::prompt_password(prompt)
        .map_err(|e| format!("no password: set {ENV}, use --password-file, or run on a terminal ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_gives_its_first_line() {
        let dir = std::env::temp_dir().join(format!("tsc-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret pass\nignored\n").unwrap();
        assert_eq!(read(Some(&file), "").unwrap(), "s3cret pass");
        assert!(
            read(Some(&dir.join("missing")), "")
                .unwrap_err()
                .contains("cannot read")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
