"""Local images: lookup by name or ID prefix, tags, removal, prune, history, save/load/import."""
