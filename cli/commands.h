// The commands of `tierfs`; each takes `COMMAND ARGS...` (argv[0] is the
// command) and returns the exit status.
#ifndef TIERFS_CLI_COMMANDS_H_
#define TIERFS_CLI_COMMANDS_H_

namespace tierfs::cli {

// The daemon's life (tierfs.cc).
int Mount(int argc, char** argv);
int Umount(int argc, char** argv);

// The offline tools (offline_tools.cc).
int Check(int argc, char** argv);
int Dump(int argc, char** argv);
int Restore(int argc, char** argv);
int Writeback(int argc, char** argv);
int Format(int argc, char** argv);

}  // namespace tierfs::cli

#endif  // TIERFS_CLI_COMMANDS_H_
