"""The default seccomp profile: Docker's (moby's profiles/seccomp, as of Docker 25-28), written out here in
Docker's JSON format — refuse every system call with EPERM, allow the ones listed, some only for given
arguments, for given capabilities or on given architectures. `seccomp_profile.from_json` turns it into the
filter for one container's capabilities, exactly as it does a profile file given with --security-opt.

What it keeps from a container, beyond what namespaces and capabilities already do: the kernel keyring
(add_key, keyctl, request_key: not namespaced), io_uring (its requests bypass seccomp; removed from Docker's
list in 25.0), vsock sockets (AF_VSOCK reaches the host's services whatever the network namespace),
personality flags other than the harmless ones, userfaultfd, NUMA policy calls (mbind and the rest need
CAP_SYS_NICE), and everything that only CAP_SYS_ADMIN & co. should reach (mount, unshare, setns, bpf, new
namespaces through clone's flags; clone3 answers ENOSYS so that libc falls back to clone, whose flags can be
checked). System calls newer than the table in linux/syscalls_x86_64.py answer ENOSYS (see
linux/seccomp.compile_profile), as runc makes them do.

Names are grouped by what they are for; the 32-bit variants (chown32, ...) stay in the list so that the
profile, exported to a bundle, means the same to a runtime filtering the i386 table too.
"""

from __future__ import annotations

from typing import Any

_ALLOWED_BY_GROUP: dict[str, str] = {
    "files and directories": """
        access chdir chmod chown chown32 creat faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark
        fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync flock fstat fstat64
        fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futimesat getcwd getdents getdents64 inotify_add_watch
        inotify_init inotify_init1 inotify_rm_watch lchown lchown32 link linkat _llseek lseek lstat lstat64 mkdir
        mkdirat mknod mknodat name_to_handle_at newfstatat open openat openat2 readahead readlink readlinkat rename
        renameat renameat2 rmdir stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs
        truncate truncate64 umask unlink unlinkat utime utimensat utimensat_time64 utimes""",
    "extended attributes": """
        fgetxattr flistxattr fremovexattr fsetxattr getxattr lgetxattr listxattr llistxattr lremovexattr lsetxattr
        removexattr setxattr""",
    "reading and writing": """
        cachestat close close_range copy_file_range dup dup2 dup3 pipe pipe2 pread64 preadv preadv2 pwrite64
        pwritev pwritev2 read readv sendfile sendfile64 splice tee vmsplice write writev""",
    "waiting for events": """
        epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
        eventfd eventfd2 _newselect poll ppoll ppoll_time64 pselect6 pselect6_time64 select signalfd signalfd4
        timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64""",
    "asynchronous I/O (not io_uring)": """
        io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit""",
    "memory": """
        brk madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mlock mlock2 mlockall mmap mmap2
        mprotect mremap msync munlock munlockall munmap pkey_alloc pkey_free pkey_mprotect remap_file_pages""",
    "processes and threads": """
        capget capset execve execveat exit exit_group fork get_robust_list get_thread_area getpgid getpgrp getpid
        getppid getpriority getrlimit getrusage getsid gettid ioprio_get ioprio_set kill pidfd_open
        pidfd_send_signal prctl prlimit64 process_mrelease restart_syscall rseq seccomp set_robust_list
        set_thread_area set_tid_address setpgid setpriority setrlimit setsid tgkill times tkill ugetrlimit vfork
        wait4 waitid waitpid landlock_add_rule landlock_create_ruleset landlock_restrict_self""",
    "user and group ids": """
        getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getresgid getresgid32 getresuid
        getresuid32 getuid getuid32 setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
        setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setuid setuid32""",
    "signals": """
        alarm pause rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
        rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sigaltstack sigprocmask sigreturn""",
    "clocks and timers": """
        adjtimex clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
        clock_nanosleep clock_nanosleep_time64 getitimer gettimeofday nanosleep setitimer time timer_create
        timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64""",
    "scheduling and futexes": """
        futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake getcpu sched_get_priority_max
        sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
        sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
        sched_setscheduler sched_yield""",
    "System V and POSIX IPC": """
        ipc mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64
        mq_unlink msgctl msgget msgrcv msgsnd semctl semget semop semtimedop semtimedop_time64 shmat shmctl shmdt
        shmget""",
    "sockets (socket itself: below)": """
        accept accept4 bind connect getpeername getsockname getsockopt listen recv recvfrom recvmmsg
        recvmmsg_time64 recvmsg send sendmmsg sendmsg sendto setsockopt shutdown socketcall socketpair""",
    "the system": "getrandom ioctl sysinfo uname",
}

ALLOWED: tuple[str, ...] = tuple(sorted({n for group in _ALLOWED_BY_GROUP.values() for n in group.split()}))

AF_VSOCK = 40
CLONE_NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
# personality(2) personas a program may ask for: PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and
# 0xffffffff (only reads the current one)
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def _allow(names: str, **more: Any) -> dict[str, Any]:
    return {"names": names.split(), "action": "SCMP_ACT_ALLOW", **more}


def _for_caps(names: str, *caps: str) -> dict[str, Any]:
    return _allow(names, includes={"caps": [f"CAP_{c}" for c in caps]})


DOCKER_DEFAULT: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,  # EPERM
    "syscalls": [
        {"names": list(ALLOWED), "action": "SCMP_ACT_ALLOW"},
        _allow("process_vm_readv process_vm_writev ptrace", includes={"minKernel": "4.8"}),
        _allow("socket", args=[{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]),
        *(_allow("personality", args=[{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]) for p in PERSONALITIES),
        _allow("arch_prctl", includes={"arches": ["amd64", "x32"]}),
        _allow("modify_ldt", includes={"arches": ["amd64", "x32", "x86"]}),
        _for_caps("open_by_handle_at", "DAC_READ_SEARCH"),
        _for_caps("bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr "
                  "move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog "
                  "umount umount2 unshare", "SYS_ADMIN"),
        # without CAP_SYS_ADMIN: clone only without namespace flags, clone3 (whose flags sit in memory, out of a
        # filter's reach) answered ENOSYS so that libc falls back to clone
        _allow("clone", args=[{"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
               excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        _for_caps("reboot", "SYS_BOOT"),
        _for_caps("chroot", "SYS_CHROOT"),
        _for_caps("delete_module init_module finit_module", "SYS_MODULE"),
        _for_caps("acct", "SYS_PACCT"),
        _for_caps("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace", "SYS_PTRACE"),
        _for_caps("iopl ioperm", "SYS_RAWIO"),
        _for_caps("settimeofday stime clock_settime clock_settime64", "SYS_TIME"),
        _for_caps("vhangup", "SYS_TTY_CONFIG"),
        _for_caps("get_mempolicy mbind set_mempolicy set_mempolicy_home_node", "SYS_NICE"),
        _for_caps("syslog", "SYSLOG"),
        _for_caps("bpf", "BPF"),
        _for_caps("perf_event_open", "PERFMON"),
    ],
}

__all__ = ["ALLOWED", "DOCKER_DEFAULT"]
