# FindMilter: Sendmail's libmilter, as an imported target Sendmail::milter.
#
# Debian ships it in libmilter-dev without a pkg-config file, so look for the
# header and the library by name. Sets Milter_FOUND, Milter_INCLUDE_DIR,
# Milter_LIBRARY.

find_path(Milter_INCLUDE_DIR NAMES libmilter/mfapi.h)
find_library(Milter_LIBRARY NAMES milter)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Milter
    REQUIRED_VARS Milter_LIBRARY Milter_INCLUDE_DIR)

if(Milter_FOUND AND NOT TARGET Sendmail::milter)
    find_package(Threads REQUIRED)
    add_library(Sendmail::milter UNKNOWN IMPORTED)
    set_target_properties(Sendmail::milter PROPERTIES
        IMPORTED_LOCATION "${Milter_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${Milter_INCLUDE_DIR}"
        INTERFACE_LINK_LIBRARIES Threads::Threads)
endif()

mark_as_advanced(Milter_INCLUDE_DIR Milter_LIBRARY)
