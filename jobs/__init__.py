"""Node-side job code (each row's command helpers), importable as ``launcher.jobs`` via the package symlink."""
