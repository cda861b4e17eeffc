//! The rank of this process and where to meet the others, from environment variables in the
//! style of PyTorch's `torchrun`.

use crate::error::{Error, Result};

/// Where this process sits in a data-parallel run.
///
/// Read from `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (the device ordinal on this machine; default
/// `RANK`), `MASTER_ADDR` (default `127.0.0.1`) and `MASTER_PORT` (default 29500), the variables
/// `torchrun` sets: a run over several machines starts one process per GPU on each machine with
/// the same `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT` and its own `RANK` and `LOCAL_RANK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

/// The port `torchrun` uses when none is given.
pub const DEFAULT_MASTER_PORT: u16 = 29500;

impl DistEnv {
    /// The run described by the environment, or `None` when `WORLD_SIZE` is not set (a
    /// single-process run). A malformed or inconsistent value is an error naming the variable.
    pub fn from_env() -> Result<Option<DistEnv>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`DistEnv::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        let Some(world_size) = lookup("WORLD_SIZE") else {
            return Ok(None);
        };
        let number = |name: &str, value: &str| -> Result<usize> {
            value.trim().parse().map_err(|_| {
                Error::invalid(
                    "distributed environment",
                    format!("{name}={value:?} is not a non-negative integer"),
                )
            })
        };
        let world_size = number("WORLD_SIZE", &world_size)?;
        let rank = match lookup("RANK") {
            Some(v) => number("RANK", &v)?,
            None => {
                return Err(Error::invalid(
                    "distributed environment",
                    "WORLD_SIZE is set but RANK is not",
                ))
            }
        };
        let local_rank = match lookup("LOCAL_RANK") {
            Some(v) => number("LOCAL_RANK", &v)?,
            None => rank,
        };
        let master_port = match lookup("MASTER_PORT") {
            Some(v) => u16::try_from(number("MASTER_PORT", &v)?).map_err(|_| {
                Error::invalid(
                    "distributed environment",
                    format!("MASTER_PORT={v} is not a port"),
                )
            })?,
            None => DEFAULT_MASTER_PORT,
        };
        let env = DistEnv {
            rank,
            world_size,
            local_rank,
            master_addr: lookup("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".to_string()),
            master_port,
        };
        env.validate()?;
        Ok(Some(env))
    }

    /// Checks that the rank lies in the world.
    pub fn validate(&self) -> Result<()> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(Error::invalid(
                "distributed environment",
                format!(
                    "RANK={} must lie in 0..WORLD_SIZE={}",
                    self.rank, self.world_size
                ),
            ));
        }
        Ok(())
    }

    /// The variables that describe this process, for starting it.
    pub fn vars(&self) -> [(&'static str, String); 5] {
        [
            ("RANK", self.rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("LOCAL_RANK", self.local_rank.to_string()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
        ]
    }
}
