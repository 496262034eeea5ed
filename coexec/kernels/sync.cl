__kernel void set_flag(__global volatile int *flag, int value) {
    atomic_xchg(flag, value);
}

/* A gate in the in-order queue: the device spins (bounded) until the host's release
   counter ``go`` reaches ``need`` (the CPU work the next kernel reads is done), so the
   kernel behind it starts within a microsecond of the host's store instead of after a
   wake-up; a gate that gives up records ``need`` in ``timed_out``. */
__kernel void gate(__global volatile int *go, int need, int max_spins, __global volatile int *timed_out) {
    int i = 0;
    for (; i < max_spins && atomic_add(go, 0) < need; i++) { }
    if (i >= max_spins) atomic_xchg(timed_out, need);
}

/* The device's idle loop between inferences: spin (bounded) until the host stores a
   non-zero ``go``, consume it and end, so the work queued behind it starts at once
   instead of after a wake-up of the device's thread. */
__kernel void idle_gate(__global volatile int *go, int max_spins) {
    for (int i = 0; i < max_spins && atomic_add(go, 0) == 0; i++) { }
    atomic_xchg(go, 0);
}

/* Notification-latency probe: announce the start, spin (bounded) until the host
   stores ``value`` into ``go``, then finish by setting ``done``. */
__kernel void wait_go(__global volatile int *go, __global volatile int *started,
                      __global volatile int *done, int value, int max_spins) {
    atomic_xchg(started, value);
    for (int i = 0; i < max_spins && atomic_add(go, 0) != value; i++) { }
    atomic_xchg(done, value);
}
