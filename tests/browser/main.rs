//! Real-browser tests: headless Chromium driven over WebDriver (`fantoccini`) against the
//! HTML report and the dashboard of the real `serve` on loopback, at 360 and 1280 px.
//! `METAGUARD_SCREENSHOTS=docs/screenshots` also writes the screenshots of README.md.

#[path = "../support/mod.rs"]
mod support;

mod dashboard;
mod driver;
mod report;
