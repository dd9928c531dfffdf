"""What every stage shares and that knows nothing of images, plans or training. Modules here import nothing from
the rest of autoseg:

``errors`` the error type users act on; ``registry`` the named extension points and plugins; ``jsonio`` JSON and npy
files; ``files`` atomic writes, temporary-file clean-up, the refusal to overwrite inputs, a full disk; ``locks`` the
one folder lock; ``process`` signals, parent death, the worker pool; ``progress`` progress lines and tables;
``faults`` the fault hooks of the kill drills; ``device`` the torch device and its memory; ``allocator`` freed
memory kept for reuse between steps; ``cpu_share`` the cores other processes keep busy; ``records`` typed JSON
records; ``tiling`` sliding-window starts."""
