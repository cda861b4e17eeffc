//! Starting one worker process per GPU on this machine, as `torchrun --nproc-per-node N` does.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

use crate::dist::DistEnv;
use crate::error::{Error, Result};

/// Runs this executable again `gpus` times with `args`, one process per GPU, each with the
/// environment of its rank (`RANK = LOCAL_RANK = 0..gpus`, `WORLD_SIZE = gpus`, the master on
/// loopback at a free port), and waits for all of them. When a worker fails the others are
/// stopped and the error names the rank.
pub fn run_workers(gpus: usize, args: &[String]) -> Result<()> {
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        path: "the running executable".into(),
        source,
    })?;
    let port = free_port()?;
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(gpus);
    for rank in 0..gpus {
        let env = DistEnv {
            rank,
            world_size: gpus,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        };
        let spawned = Command::new(&exe).args(args).envs(env.vars()).spawn();
        match spawned {
            Ok(child) => children.push((rank, child)),
            Err(source) => {
                stop(&mut children);
                return Err(Error::Io { path: exe, source });
            }
        }
    }
    // Poll so that one failing worker stops the rest instead of leaving them waiting for it in
    // a collective.
    let mut failure = None;
    while !children.is_empty() && failure.is_none() {
        let mut index = 0;
        while index < children.len() {
            let (rank, child) = &mut children[index];
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    children.remove(index);
                }
                Ok(Some(status)) => {
                    failure = Some(Error::Distributed {
                        rank: *rank,
                        reason: format!("the worker process exited with {status}"),
                    });
                    break;
                }
                Ok(None) => index += 1,
                Err(e) => {
                    failure = Some(Error::Distributed {
                        rank: *rank,
                        reason: format!("cannot watch the worker process: {e}"),
                    });
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    match failure {
        Some(e) => {
            stop(&mut children);
            Err(e)
        }
        None => Ok(()),
    }
}

fn stop(children: &mut [(usize, Child)]) {
    for (_, child) in children.iter_mut() {
        // Already-exited children make kill fail harmlessly.
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A TCP port on loopback that was free a moment ago.
fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            path: "127.0.0.1:0".into(),
            source,
        })
}
