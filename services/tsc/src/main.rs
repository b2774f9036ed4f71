use clap::Parser;
use std::io::Write;
use tinysns_common::proto::social::Status as Code;
use tinysns_tsc::command::{self, Command, Parsed};
use tinysns_tsc::display;
use tinysns_tsc::session::Session;
use tinysns_tsc::timeline::{self, Lines};
use tokio::io::{AsyncBufReadExt, BufReader, Stdin};

#[derive(Debug, Parser)]
#[command(name = "tsc", version, about = "tinysns client", disable_help_flag = true)]
struct Args {
    /// Coordinator host.
    #[arg(
        short = 'h',
        long = "coordinator-host",
        env = "TINYSNS_COORDINATOR_HOST",
        default_value = "127.0.0.1"
    )]
    host: String,
    /// Coordinator port.
    #[arg(
        short = 'k',
        long = "coordinator-port",
        env = "TINYSNS_COORDINATOR_PORT",
        default_value_t = 9000
    )]
    port: u16,
    /// Your user id (a positive integer).
    #[arg(short = 'u', long = "user", value_parser = clap::value_parser!(u64).range(1..))]
    user: u64,
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

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // Logs go to stderr and are quiet unless RUST_LOG asks, so stdout is exactly the
    // classic client's.
    tinysns_common::telemetry::init("warn");
    let coordinator = format!("{}:{}", args.host, args.port);
    let mut session = match Session::connect(&coordinator, args.user, args.connect_timeout).await {
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
        let status = match &command {
            Command::List => match session.list().await {
                Ok(reply) => {
                    let status = Code::try_from(reply.status).unwrap_or(Code::FailureUnknown);
                    print(&format!("{}\n", display::status_line(status)));
                    if status == Code::Success {
                        print(&display::list_lines(&reply));
                    }
                    continue;
                }
                Err(status) => Err(status),
            },
            Command::Follow(target) => session.relation(target, true).await,
            Command::UnFollow(target) => session.relation(target, false).await,
            Command::Timeline => Ok(Code::Success),
        };
        match status {
            Ok(status) => print(&format!("{}\n", display::status_line(status))),
            Err(status) => {
                grpc_failed(&status);
                continue;
            }
        }
        if command == Command::Timeline {
            print(&format!("{}\n", display::IN_TIMELINE));
            if let Err(status) = timeline::run(&mut session, &mut input).await {
                grpc_failed(&status);
            }
        }
    }
    session.logout().await;
}
