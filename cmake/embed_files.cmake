# Writes OUT, a C++ source defining trellis::control::find_ui_file() over the
# files listed in FILES (a ;-list), each kept byte for byte under its file name.
# Run as: cmake -DOUT=... -DFILES=... -P embed_files.cmake
set(text "// Generated from src/control/ui/ by cmake/embed_files.cmake.\n")
string(APPEND text "#include \"control/ui_files.h\"\n\nnamespace trellis::control {\nnamespace {\n")
set(entries "")
set(index 0)
foreach(file IN LISTS FILES)
  get_filename_component(name ${file} NAME)
  file(READ ${file} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${hex}")
  # Lines of 32 bytes keep the source readable by tools (CMake's regular
  # expressions have no {n}).
  string(REGEX REPLACE "(................................................................)"
         "\\1\"\n    \"" escaped "${escaped}")
  string(APPEND text "const char kFile${index}[] =\n    \"${escaped}\";\n")
  string(APPEND entries "    {\"${name}\", {kFile${index}, sizeof kFile${index} - 1}},\n")
  math(EXPR index "${index} + 1")
endforeach()
string(APPEND text "const UiFile kFiles[] = {\n${entries}};\n}  // namespace\n\n")
string(APPEND text "const UiFile* find_ui_file(std::string_view name) {\n")
string(APPEND text "  for (const UiFile& f : kFiles)\n    if (f.name == name) return &f;\n  return nullptr;\n}\n\n")
string(APPEND text "}  // namespace trellis::control\n")
file(WRITE ${OUT}.tmp "${text}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
