//! The `hive` binary.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = hive::cli::Cli::parse();
    std::process::exit(hive::cli::main(cli).await);
}
