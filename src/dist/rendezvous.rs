//! Hands a token from rank 0 to every other rank over TCP — NCCL's unique id, which every rank
//! needs to join the communicator.
//!
//! Rank 0 listens on `MASTER_ADDR:MASTER_PORT`; every other rank connects (retrying until rank 0
//! is up), says who it is and receives the token. The exchange is a few bytes:
//! `MAGNET-RDV1`, then `rank` and `world_size` as little-endian u32 from the peer, and from rank 0
//! the token's length (u32) and bytes. A peer from another run (other world size, a rank seen
//! twice) is an error on both sides.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::dist::DistEnv;
use crate::error::{Error, Result};

const MAGIC: &[u8; 11] = b"MAGNET-RDV1";

/// How long ranks wait for each other when `MAGNET_RENDEZVOUS_TIMEOUT` (seconds) is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The rendezvous timeout: `MAGNET_RENDEZVOUS_TIMEOUT` seconds, else [`DEFAULT_TIMEOUT`].
pub fn timeout_from_env() -> Result<Duration> {
    match std::env::var("MAGNET_RENDEZVOUS_TIMEOUT") {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                Error::invalid(
                    "rendezvous",
                    format!("MAGNET_RENDEZVOUS_TIMEOUT={v:?} is not a positive number of seconds"),
                )
            }),
    }
}

/// Rank 0 makes the token with `make` and sends it to every other rank; every rank returns it.
pub fn share_from_rank0(
    env: &DistEnv,
    timeout: Duration,
    make: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    env.validate()?;
    if env.rank == 0 {
        let token = make()?;
        serve(env, timeout, &token)?;
        Ok(token)
    } else {
        fetch(env, timeout)
    }
}

fn fail(env: &DistEnv, reason: impl std::fmt::Display) -> Error {
    Error::Distributed {
        rank: env.rank,
        reason: format!(
            "rendezvous at {}:{}: {reason}",
            env.master_addr, env.master_port
        ),
    }
}

fn serve(env: &DistEnv, timeout: Duration, token: &[u8]) -> Result<()> {
    let listener = TcpListener::bind((env.master_addr.as_str(), env.master_port))
        .map_err(|e| fail(env, format!("cannot listen: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| fail(env, e))?;
    let deadline = Instant::now() + timeout;
    let mut joined = vec![false; env.world_size];
    joined[0] = true;
    while joined.iter().any(|j| !j) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| fail(env, e))?;
                stream
                    .set_read_timeout(Some(timeout))
                    .map_err(|e| fail(env, e))?;
                let (rank, world) = read_hello(&mut stream).map_err(|e| fail(env, e))?;
                if world != env.world_size || rank == 0 || rank >= env.world_size || joined[rank] {
                    return Err(fail(
                        env,
                        format!(
                            "a peer says it is rank {rank} of {world}; expected an unseen rank \
                             of {}",
                            env.world_size
                        ),
                    ));
                }
                let len = u32::try_from(token.len()).map_err(|e| fail(env, e))?;
                stream
                    .write_all(&len.to_le_bytes())
                    .and_then(|_| stream.write_all(token))
                    .map_err(|e| fail(env, format!("sending to rank {rank}: {e}")))?;
                joined[rank] = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<usize> = (0..env.world_size).filter(|&r| !joined[r]).collect();
                    return Err(fail(
                        env,
                        format!("ranks {missing:?} did not join within {timeout:?}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(fail(env, e)),
        }
    }
    Ok(())
}

fn fetch(env: &DistEnv, timeout: Duration) -> Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<_> = (env.master_addr.as_str(), env.master_port)
        .to_socket_addrs()
        .map_err(|e| fail(env, format!("cannot resolve the address: {e}")))?
        .collect();
    let mut stream = loop {
        let attempt = addrs
            .iter()
            .find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(1)).ok());
        match attempt {
            Some(stream) => break stream,
            None if Instant::now() > deadline => {
                return Err(fail(
                    env,
                    format!("rank 0 did not answer within {timeout:?}"),
                ))
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    stream
        .set_read_timeout(Some(remaining.max(Duration::from_secs(1))))
        .map_err(|e| fail(env, e))?;
    let rank = u32::try_from(env.rank).map_err(|e| fail(env, e))?;
    let world = u32::try_from(env.world_size).map_err(|e| fail(env, e))?;
    stream
        .write_all(MAGIC)
        .and_then(|_| stream.write_all(&rank.to_le_bytes()))
        .and_then(|_| stream.write_all(&world.to_le_bytes()))
        .map_err(|e| fail(env, e))?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| fail(env, format!("no token from rank 0: {e}")))?;
    let mut token = vec![0u8; u32::from_le_bytes(len) as usize];
    stream
        .read_exact(&mut token)
        .map_err(|e| fail(env, format!("truncated token from rank 0: {e}")))?;
    Ok(token)
}

fn read_hello(stream: &mut TcpStream) -> std::io::Result<(usize, usize)> {
    let mut hello = [0u8; MAGIC.len() + 8];
    stream.read_exact(&mut hello)?;
    if &hello[..MAGIC.len()] != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a connection that is not a magnet rank",
        ));
    }
    let word = |at: usize| u32::from_le_bytes(hello[at..at + 4].try_into().unwrap()) as usize;
    Ok((word(MAGIC.len()), word(MAGIC.len() + 4)))
}
