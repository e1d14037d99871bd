// The console page: filled in by the frontend work.
