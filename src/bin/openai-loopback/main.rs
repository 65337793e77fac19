//! `openai-loopback`: an OpenAI-compatible chat-completions and embeddings server on a
//! loopback port, with settable faults, for tests and benchmarks (see `server.rs`). Its
//! own binary: the `ragprobe` product does not link it.

mod server;

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "openai-loopback",
    version,
    about = "OpenAI-compatible loopback server with settable latency and faults"
)]
struct Args {
    /// Address to bind; loopback only. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    #[command(flatten)]
    faults: server::Faults,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let served = runtime.block_on(server::serve(args.addr, args.faults, |addr| {
        // The first line tells a test or script where to connect.
        println!("listening on http://{addr}/v1");
        let _ = std::io::stdout().flush();
    }));
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::ExitCode::from(2)
        }
    }
}
