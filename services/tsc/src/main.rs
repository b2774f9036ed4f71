use clap::Parser;
use std::io::{IsTerminal, Write};
use tinysns_client::session::{Connection, Credentials, Session};
use tinysns_common::proto::social::Status as Code;
use tinysns_common::tls::TlsArgs;
use tinysns_tsc::command::{self, Command, Parsed};
use tinysns_tsc::display;
use tinysns_tsc::password;
use tinysns_tsc::timeline::{self, Lines};
use tinysns_tsc::views;
use tokio::io::{AsyncBufReadExt, BufReader, Stdin};

#[derive(Debug, Parser)]
#[command(name = "tsc", version, about = "tinysns client", disable_help_flag = true)]
struct Args {
    /// Coordinator host; with several coordinators, all of them, comma-separated, each
    /// `host` or `host:port`.
    #[arg(
        short = 'h',
        long = "coordinator-host",
        env = "TINYSNS_COORDINATOR_HOST",
        default_value = "127.0.0.1"
    )]
    host: String,
    /// Coordinator port (for hosts given without one).
    #[arg(
        short = 'k',
        long = "coordinator-port",
        env = "TINYSNS_COORDINATOR_PORT",
        default_value_t = 9000
    )]
    port: u16,
    /// Your username (password mode), or your numeric user id (open mode: the classic system).
    #[arg(short = 'u', long = "user")]
    user: String,
    /// Create the account first (password mode), then log in.
    #[arg(long)]
    register: bool,
    /// Connect over TLS, checking the servers' certificates against this PEM CA file.
    #[arg(long, env = "TINYSNS_TLS_CA", value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Read the password from this file (first line) instead of TINYSNS_PASSWORD or the terminal.
    #[arg(long, value_name = "FILE")]
    password_file: Option<std::path::PathBuf>,
    /// How long to keep trying to reach a server for the user (one may be failing over)
    /// before giving up with `connection failed: -1`.
    #[arg(
        long,
        env = "TINYSNS_CONNECT_TIMEOUT",
        default_value = "3s",
        value_parser = tinysns_common::cli::parse_duration
    )]
    connect_timeout: std::time::Duration,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Lines from stdin; works the same on a terminal and on a pipe.
struct StdinLines(BufReader<Stdin>);

impl Lines for StdinLines {
    async fn next_line(&mut self) -> Option<String> {
        loop {
            let mut buf = Vec::new();
            match self.0.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            match String::from_utf8(buf) {
                Ok(line) => return Some(line),
                Err(_) => print("Invalid Input -- not valid UTF-8\n"),
            }
        }
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn grpc_failed(status: &tonic::Status) {
    print(&format!("grpc failed: {}\n", status.message()));
}

/// Who logs in: a numeric id is the classic open-mode login unless a password is given or
/// asked for; anything else is a username with its password.
fn credentials(args: &Args) -> Result<Credentials, String> {
    let numeric = tinysns_common::limits::parse_user_id(&args.user);
    let have_password = args.password_file.is_some() || std::env::var_os(password::ENV).is_some();
    if let Some(id) = numeric
        && !args.register
        && !have_password
    {
        return Ok(Credentials::Open(id));
    }
    let password = password::read(args.password_file.as_deref(), "Password: ")?;
    Ok(Credentials::Password {
        username: args.user.clone(),
        password,
        register: args.register,
    })
}

/// PASSWORD: the current and the new password, from the terminal (without echo) or, when
/// input is piped, from the next two lines.
async fn change_password(session: &mut Session, input: &mut StdinLines) -> Result<&'static str, tonic::Status> {
    let (current, new) = if std::io::stdin().is_terminal() {
        let ask = |prompt: &str| rpassword::prompt_password(prompt).unwrap_or_default();
        (ask("Current password: "), ask("New password: "))
    } else {
        (
            input.next_line().await.unwrap_or_default(),
            input.next_line().await.unwrap_or_default(),
        )
    };
    let (status, message) = session.change_password(&current, &new).await?;
    if status != Code::Success {
        eprintln!("password not changed: {message}");
    }
    Ok(display::status_line(status))
}

/// DELETEACCOUNT: asks for the username (the next input line when piped) as a confirmation.
/// True once the deletion is under way.
async fn delete_account(session: &mut Session, input: &mut StdinLines) -> Result<bool, tonic::Status> {
    print(display::CONFIRM_DELETION);
    let confirm = input.next_line().await.unwrap_or_default();
    let (status, message) = session.delete_account(confirm.trim()).await?;
    print(&format!("{}\n", display::status_line(status)));
    if status == Code::Success {
        print(&format!("{message}\n"));
    } else if !message.is_empty() {
        eprintln!("{message}");
    }
    Ok(status == Code::Success)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // Logs go to stderr and are quiet unless RUST_LOG asks, so stdout is exactly the
    // classic client's.
    tinysns_common::telemetry::init("warn");
    let tls = TlsArgs {
        tls_ca: args.tls_ca.clone(),
        ..TlsArgs::default()
    };
    let loaded = tls.load().map_err(|e| e.to_string()).and_then(|tls| {
        let coordinators = tinysns_common::coordinators::parse_addresses(&args.host, args.port)?;
        Ok((coordinators, tls))
    });
    let connection = match loaded {
        Ok((coordinators, tls)) => Connection {
            coordinators,
            tls: tls.map(|t| t.client()),
        },
        Err(problem) => {
            eprintln!("{problem}");
            print("connection failed: -1\n");
            std::process::exit(1);
        }
    };
    let credentials = match credentials(&args) {
        Ok(c) => c,
        Err(problem) => {
            eprintln!("{problem}");
            print("connection failed: -1\n");
            std::process::exit(1);
        }
    };
    let mut session = match Session::connect(connection, credentials, args.connect_timeout).await {
        Ok(s) => s,
        Err(error) => {
            eprintln!("{error}");
            print("connection failed: -1\n");
            std::process::exit(1);
        }
    };
    print(display::BANNER);
    let mut input = StdinLines(BufReader::new(tokio::io::stdin()));
    loop {
        print(display::PROMPT);
        let Some(line) = input.next_line().await else { break };
        let command = match command::parse(&line) {
            Parsed::Nothing => continue,
            Parsed::Complain(message) => {
                print(&format!("{message}\n"));
                continue;
            }
            Parsed::Run(command) => command,
        };
        let line = match &command {
            Command::List => match session.list().await {
                Ok(Ok(listing)) => {
                    print(&format!("{}\n", display::status_line(Code::Success)));
                    print(&display::list_lines(&listing));
                    continue;
                }
                Ok(Err(status)) => Ok(display::status_line(status)),
                Err(status) => Err(status),
            },
            Command::Follow(target) => session
                .relation(target, true)
                .await
                .map(|s| display::relation_line(true, s)),
            Command::UnFollow(target) => session
                .relation(target, false)
                .await
                .map(|s| display::relation_line(false, s)),
            Command::Timeline => Ok(display::status_line(Code::Success)),
            Command::Password => change_password(&mut session, &mut input).await,
            Command::DeleteAccount => match delete_account(&mut session, &mut input).await {
                // Gone: the session ended with the account.
                Ok(true) => return,
                Ok(false) => continue,
                Err(status) => Err(status),
            },
            Command::Help => {
                print(display::HELP);
                continue;
            }
            newer => match views::run(&mut session, newer).await {
                Some(Ok(text)) => {
                    print(&text);
                    continue;
                }
                Some(Err(status)) => Err(status),
                None => continue,
            },
        };
        match line {
            Ok(line) => print(&format!("{line}\n")),
            Err(status) => {
                grpc_failed(&status);
                continue;
            }
        }
        if command == Command::Timeline {
            print(&format!("{}\n", display::IN_TIMELINE));
            if let Err(status) = timeline::run(&session, &mut input).await {
                grpc_failed(&status);
            }
        }
    }
    session.logout().await;
}
