#include "Metrics/ProcessMetrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace metrics {

namespace {

// Fields 14 and 15 (utime, stime, in clock ticks), 22 (starttime, ticks after boot), 23 (vsize,
// bytes) and 24 (rss, pages) of /proc/self/stat; the name in field 2 may hold spaces, so the fields
// are counted from after its closing parenthesis.
struct ProcStat {
    double cpu_seconds = 0;
    double start_ticks = 0;
    double virtual_bytes = 0;
    double resident_pages = 0;
};

bool ReadProcStat(ProcStat& stat) {
    std::ifstream file("/proc/self/stat");
    std::string line;
    if (!std::getline(file, line)) return false;
    const auto close = line.rfind(')');
    if (close == std::string::npos) return false;
    std::istringstream fields(line.substr(close + 2));
    std::string field;
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    // After the name, field 3 (state) is the first.
    for (int number = 3; fields >> field; ++number) {
        if (number == 14 || number == 15) stat.cpu_seconds += std::stod(field) / ticks;
        if (number == 22) stat.start_ticks = std::stod(field);
        if (number == 23) stat.virtual_bytes = std::stod(field);
        if (number == 24) {
            stat.resident_pages = std::stod(field);
            return true;
        }
    }
    return false;
}

double BootTimeSeconds() {
    std::ifstream file("/proc/stat");
    std::string key;
    while (file >> key) {
        if (key == "btime") {
            double seconds = 0;
            file >> seconds;
            return seconds;
        }
        file.ignore(1 << 16, '\n');
    }
    return 0;
}

double OpenFileDescriptors() {
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return 0;
    double count = 0;
    while (const dirent* entry = readdir(dir))
        if (entry->d_name[0] != '.') ++count;
    closedir(dir);
    return count - 1;  // the directory stream's own descriptor
}

}  // namespace

void AddProcessMetrics(MetricsRegistry& registry) {
    Counter& cpu =
        registry.CounterFamily("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
            .With({});
    Gauge& resident = registry.GaugeFamily("process_resident_memory_bytes", "Resident memory size in bytes.").With({});
    Gauge& virtual_memory =
        registry.GaugeFamily("process_virtual_memory_bytes", "Virtual memory size in bytes.").With({});
    Gauge& open_fds = registry.GaugeFamily("process_open_fds", "Number of open file descriptors.").With({});
    Gauge& max_fds = registry.GaugeFamily("process_max_fds", "Maximum number of open file descriptors.").With({});
    Gauge& start_time =
        registry.GaugeFamily("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
            .With({});
    const double page_size = static_cast<double>(sysconf(_SC_PAGESIZE));
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double boot = BootTimeSeconds();
    registry.AddCollector([&cpu, &resident, &virtual_memory, &open_fds, &max_fds, &start_time, page_size, ticks, boot] {
        ProcStat stat;
        if (ReadProcStat(stat)) {
            cpu.SetTotal(stat.cpu_seconds);
            resident.Set(stat.resident_pages * page_size);
            virtual_memory.Set(stat.virtual_bytes);
            start_time.Set(boot + stat.start_ticks / ticks);
        }
        open_fds.Set(OpenFileDescriptors());
        rlimit limit{};
        if (getrlimit(RLIMIT_NOFILE, &limit) == 0) max_fds.Set(static_cast<double>(limit.rlim_cur));
    });
}

}  // namespace metrics
