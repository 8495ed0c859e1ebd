//! Routes the core's `log` records to the platform's log, once per process: logcat (tag
//! `nextword`) on Android, the unified log on Apple platforms, stderr elsewhere but only when
//! `NEXTWORD_LOG` is set (its value is an env_logger filter such as `debug`).

use std::sync::Once;

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for log::LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

static INSTALL_LOGGER: Once = Once::new();

/// Installs the platform logger on the first call; every call sets the most verbose level
/// logged, so an app can turn logging up or down later.
#[uniffi::export]
pub fn init_logging(level: LogLevel) {
    let filter = log::LevelFilter::from(level);
    INSTALL_LOGGER.call_once(|| install_platform_logger(filter));
    log::set_max_level(filter);
}

#[cfg(target_os = "android")]
fn install_platform_logger(filter: log::LevelFilter) {
    android_logger::init_once(
        android_logger::Config::default()
            .with_tag("nextword")
            .with_max_level(filter),
    );
}

#[cfg(target_vendor = "apple")]
fn install_platform_logger(filter: log::LevelFilter) {
    // Fails only when the app installed another `log` logger first: theirs is kept.
    let _ = oslog::OsLogger::new("io.nextword")
        .level_filter(filter)
        .init();
}

#[cfg(not(any(target_os = "android", target_vendor = "apple")))]
fn install_platform_logger(filter: log::LevelFilter) {
    if std::env::var_os("NEXTWORD_LOG").is_none() {
        return;
    }
    // Fails only when the host program installed another `log` logger first: theirs is kept.
    let _ = env_logger::Builder::new()
        .filter_level(filter)
        .parse_env("NEXTWORD_LOG")
        .target(env_logger::Target::Stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_calls_only_change_the_level() {
        init_logging(LogLevel::Warn);
        assert_eq!(log::max_level(), log::LevelFilter::Warn);
        init_logging(LogLevel::Trace);
        assert_eq!(log::max_level(), log::LevelFilter::Trace);
    }
}
