//! Real-browser tests: headless Chromium driven over WebDriver (`fantoccini`) against the
//! HTML report, the dashboard and its household controls of the real `serve` on loopback, at 360 and 1280 px.
//! `METAGUARD_SCREENSHOTS=docs/screenshots` also writes the screenshots of README.md.

#[path = "../support/mod.rs"]
mod support;

mod controls;
mod dashboard;
mod driver;
mod report;
