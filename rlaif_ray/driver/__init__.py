"""The orchestration half of the library: Ray start-up, actor pools, weight sync, the iteration."""
