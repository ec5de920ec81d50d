//! `orca`: the terminal UI SREs drive the cluster from. State (`app`), data (`model`, fed by
//! `feed`), rendering (`ui`) and the run loop (`run`) are separate; `up` runs a master and a
//! local agent in-process for `orca up`; `migration` is the Migration view's state and poller.
pub mod actions;
pub mod app;
#[cfg(feature = "up")]
pub mod demo;
pub mod feed;
pub mod filter;
pub mod format;
pub mod logs;
pub mod migration;
pub mod model;
pub mod rows;
pub mod run;
pub mod saved;
#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;
#[cfg(test)]
mod tests;
pub mod ui;
#[cfg(feature = "up")]
pub mod up;
pub mod views;
