//! Compiles `proto/*.proto` with `protox` (a pure-Rust protobuf compiler) and
//! `prost-build`, so building raftwal never needs a system `protoc`.

use std::io::Result;

fn main() -> Result<()> {
    let protos = ["proto/raftwal.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"]).map_err(std::io::Error::other)?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
