-- luacheck settings for the Lua shipped with jobhost (lua/, jobs/) and
-- its specs (tests/spec/).
std = "lua54"
max_line_length = 80
files["tests/spec"] = {
  globals = { "spec_cases", "describe", "it", "check", "spec" },
}
