//! Shared support code for flashgate's integration test crates: include it with `mod support;`.
//! Not every test crate uses every helper, hence the crate-wide `dead_code` allowance.
#![allow(dead_code)]

pub mod app;
pub mod db;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod scenarios;
