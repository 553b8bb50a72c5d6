//! flashgate: a flash-sale gateway. Buyers' purchases take stock atomically from sharded
//! Redis keys (Lua), and every accepted order is durably recorded in the same step.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod http;
pub mod limits;
pub mod orders;
pub mod persist;
pub mod purchase;
pub mod sales;
pub mod startup;
pub mod stock;
pub mod store;
pub mod tokens;
pub mod workers;
