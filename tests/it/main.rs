//! flashgate's integration tests, one binary: every module below starts what it needs
//! (real redis-server processes, single node and 3-master cluster, real PostgreSQL, SQLite,
//! the gateway in-process or as the real `flashgate` binary) through [`support`].
//! One binary compiles `support/` once and links the crate once; background work of an
//! in-process gateway is awaited through its hooks (`TestApp::flush`,
//! `TestApp::run_recovery_once`), not polled.

mod support;

mod ack;
mod batch;
mod bulk_pool;
mod cli_sale;
mod cluster;
mod cluster_script;
mod container;
mod cors;
mod crash;
mod dashboard;
mod dead_letters;
mod edge;
mod embedded;
mod failover;
mod hostile;
mod identity;
mod lifecycle;
mod lifecycle_crash;
mod live_ops;
mod loans;
mod metrics;
mod openapi;
mod operator;
mod order_db;
mod pause;
mod persistence;
mod placement;
mod postgres_harness;
mod pow_js;
mod purchase;
mod reconcile;
mod redis_harness;
mod retries;
mod sales;
mod scripts;
mod sold_out;
mod tokens;
