"""MoinMoin plug-in directory (`plugin_dirs`): its `macros` hold <<NetworkChanges>>."""
