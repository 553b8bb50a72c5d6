//! Shared support code for the integration tests: real servers ([`redis`], [`postgres`],
//! [`db`]), the gateway in-process ([`app`]) or as the real binary ([`process`]), and
//! shared storm scenarios ([`scenarios`]).

pub mod app;
pub mod browser;
pub mod db;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod scenarios;
