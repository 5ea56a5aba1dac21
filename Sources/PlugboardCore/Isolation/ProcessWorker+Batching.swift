extension ProcessWorker {
    /// The sizes of the batches its worker process handed the plugin, from the control page
    /// (kept across restarts of the process; a hot reload's new worker starts from zero).
    public var batchSizes: BatchSizes.Snapshot { control.batchSizes.snapshot }
}
