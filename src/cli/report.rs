//! `metaguard report`: the flags turned into a report request, then built and printed
//! (or delivered) by `crate::report`.

use crate::config::Config;

use super::{ReportArgs, ReportFormat};

impl From<ReportFormat> for crate::report::Format {
    fn from(f: ReportFormat) -> Self {
        use crate::report::Format as F;
        match f {
            ReportFormat::Text => F::Text,
            ReportFormat::Markdown => F::Markdown,
            ReportFormat::Html => F::Html,
            ReportFormat::Json => F::Json,
            ReportFormat::Csv => F::Csv,
        }
    }
}

/// Turn `metaguard report` flags into a request (config loaded, defaults applied).
pub(crate) fn request(args: &ReportArgs) -> anyhow::Result<crate::report::ReportRequest> {
    use std::io::IsTerminal;

    use crate::report::{ReportRequest, When};
    let (config, _) = Config::locate(args.config.as_deref())?;
    let dbs = if args.db.is_empty() {
        vec![config.store.db.clone()]
    } else {
        args.db.clone()
    };
    let when = match (&args.week, &args.since, &args.until) {
        (Some(w), _, _) if !w.is_empty() => When::Week(w.clone()),
        (_, Some(s), Some(u)) => When::Range {
            since: s.clone(),
            until: u.clone(),
        },
        _ => When::LastWeek,
    };
    Ok(ReportRequest {
        dbs,
        config: config.report,
        when,
        tz: crate::report::local_tz(),
        now: jiff::Timestamp::now(),
        device: args.device.clone(),
        format: args.format.into(),
        out: args.out.clone(),
        email: args.email,
        deliver: args.deliver,
        webhook: args.webhook.clone(),
        tls: config.tls,
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    })
}

/// `metaguard report`.
pub(crate) fn run(args: &ReportArgs) -> anyhow::Result<i32> {
    print!("{}", crate::report::run(&request(args)?)?);
    Ok(0)
}
