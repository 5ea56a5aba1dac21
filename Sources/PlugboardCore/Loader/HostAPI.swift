import CPlugboard
import CPlugboardSupport

/// The host API table every plugin receives (`pb_host_api`).
///
/// One immutable table for the whole process: the functions find the plugin they
/// serve through the `pb_host *` argument (a `PluginContext`).
enum HostAPI {
    // Written once, on first use (Swift globals are initialised lazily and
    // atomically), never modified afterwards; plugins only read it.
    nonisolated(unsafe) static let table: UnsafeMutablePointer<pb_host_api> = {
        let t = UnsafeMutablePointer<pb_host_api>.allocate(capacity: 1)
        t.initialize(to: pb_host_api(
            size: UInt32(MemoryLayout<pb_host_api>.size),
            abi_version: (UInt32(PB_ABI_MAJOR) << 16) | UInt32(PB_ABI_MINOR),
            log: { host, level, message in
                guard let ctx = PluginContext.from(host), let message else { return }
                ctx.log(level: level, message: String(cString: message))
            },
            publish: { host, topic, data, len in
                guard let ctx = PluginContext.from(host), let topic else { return PB_ERR_INVALID }
                if len > 0 && data == nil { return PB_ERR_INVALID }
                if let remote = ctx.remote {
                    return remote.publish(topic: String(cString: topic), payload: UnsafeRawBufferPointer(start: data, count: len))
                }
                let payload = len == 0 ? [] : Array(UnsafeRawBufferPointer(start: data, count: len))
                return ctx.publish(topic: String(cString: topic), payload: payload)
            },
            counter_add: { host, name, delta in
                guard let ctx = PluginContext.from(host), let name else { return }
                ctx.counterAdd(String(cString: name), delta)
            },
            gauge_set: { host, name, value in
                guard let ctx = PluginContext.from(host), let name else { return }
                ctx.gaugeSet(String(cString: name), value)
            },
            histogram_observe: { host, name, value in
                guard let ctx = PluginContext.from(host), let name else { return }
                ctx.histogramObserve(String(cString: name), value)
            },
            config_get: { host, key in
                guard let ctx = PluginContext.from(host), let key else { return nil }
                return ctx.configValue(key)
            },
            device_table: { host, visit, user in
                guard let ctx = PluginContext.from(host), let visit else { return PB_ERR_INVALID }
                let snapshot = ctx.deviceSnapshot()
                for i in 0..<snapshot.count { visit(user, snapshot.pointers[i]) }
                return PB_OK
            },
            monotonic_ns: { pbs_monotonic_ns() }
        ))
        return t
    }()
}
