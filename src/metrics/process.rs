//! Figures about this process from `/proc/self/status` (Linux; absent elsewhere).

/// What `/proc/self/status` says about memory and threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Resident set size in bytes (`VmRSS`).
    pub resident_bytes: Option<u64>,
    /// OS threads (`Threads`).
    pub threads: Option<u64>,
}

impl ProcessStats {
    /// Reads this process's figures; `None` fields when they cannot be read.
    pub fn read() -> ProcessStats {
        std::fs::read_to_string("/proc/self/status")
            .map(|text| ProcessStats::parse(&text))
            .unwrap_or_default()
    }

    fn parse(status: &str) -> ProcessStats {
        let field = |name: &str| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(name)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
        };
        ProcessStats {
            resident_bytes: field("VmRSS").map(|kib| kib * 1024),
            threads: field("Threads"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_in_kib_and_threads_as_a_count() {
        let status = "Name:\tx\nVmRSS:\t  2048 kB\nThreads:\t7\n";
        assert_eq!(
            ProcessStats::parse(status),
            ProcessStats {
                resident_bytes: Some(2048 * 1024),
                threads: Some(7)
            }
        );
        assert_eq!(ProcessStats::parse(""), ProcessStats::default());
    }

    #[test]
    fn this_process_has_memory_and_threads_on_linux() {
        if cfg!(target_os = "linux") {
            let stats = ProcessStats::read();
            assert!(stats.resident_bytes.is_some_and(|b| b > 0));
            assert!(stats.threads.is_some_and(|t| t >= 1));
        }
    }
}
