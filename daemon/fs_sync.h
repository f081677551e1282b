// Durability of a directory entry: after a rename (or unlink) the change
// survives a power cut only once the directory itself is fsynced. One
// helper for the maildir carrier, the token store, the maildrop and
// outbox-postdrop.
#pragma once
#include <string>

namespace outbox::fs {

// 0 on success, else the errno of the open or the fsync.
int fsync_dir(const std::string& dir);

}  // namespace outbox::fs
