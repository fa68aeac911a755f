# Whether to build the CUDA module, and for which GPUs (included by CMakeLists.txt).
#
#   OPTKERN_CUDA=OFF                                   no CUDA module
#   OPTKERN_CUDA=ON, or CMAKE_CUDA_ARCHITECTURES or    built as asked (wheel builders, CI); ON alone
#   $ENV{CUDAARCHS} set                                builds cuda/CMakeLists.txt's default list
#   AUTO (default) otherwise                           built only for the GPUs visible now, as reported
#                                                      by nvidia-smi; none visible: not built, said in one line
#
# A default `pip install .` on a machine with nvcc but no GPU then takes the CPU
# module's time, not that of five GPU architectures nobody can run here.

# nvidia-smi lists every GPU the driver sees (a cache variable: tests point it at a stand-in).
find_program(OPTKERN_NVIDIA_SMI nvidia-smi)

# The visible GPUs' architectures as CMake spells them ("8.6" -> "86"), de-duplicated;
# empty when there is no driver, no GPU, or CUDA_VISIBLE_DEVICES hides them all.
function(optkern_visible_cuda_architectures out)
  set(archs "")
  if(DEFINED ENV{CUDA_VISIBLE_DEVICES} AND ("$ENV{CUDA_VISIBLE_DEVICES}" STREQUAL ""
                                           OR "$ENV{CUDA_VISIBLE_DEVICES}" STREQUAL "-1"))
    set(${out} "" PARENT_SCOPE)
    return()
  endif()
  if(OPTKERN_NVIDIA_SMI)
    execute_process(COMMAND "${OPTKERN_NVIDIA_SMI}" --query-gpu=compute_cap --format=csv,noheader
                    RESULT_VARIABLE rc OUTPUT_VARIABLE caps ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(rc EQUAL 0)
      string(REPLACE "\n" ";" caps "${caps}")
      foreach(cap IN LISTS caps)
        string(STRIP "${cap}" cap)
        if(cap MATCHES "^([0-9]+)\\.([0-9]+)$")
          list(APPEND archs "${CMAKE_MATCH_1}${CMAKE_MATCH_2}")
        endif()
      endforeach()
      list(REMOVE_DUPLICATES archs)
    endif()
  endif()
  set(${out} "${archs}" PARENT_SCOPE)
endfunction()

# Sets ${build} to TRUE or FALSE; for AUTO with GPUs, also CMAKE_CUDA_ARCHITECTURES in the caller's scope.
function(optkern_cuda_plan build)
  set(asked FALSE)
  if(OPTKERN_CUDA STREQUAL "ON" OR DEFINED CMAKE_CUDA_ARCHITECTURES OR DEFINED ENV{CUDAARCHS})
    set(asked TRUE)
  endif()
  if(OPTKERN_CUDA STREQUAL "OFF")
    set(${build} FALSE PARENT_SCOPE)
  elseif(asked)
    set(${build} TRUE PARENT_SCOPE)
  elseif(OPTKERN_CUDA STREQUAL "AUTO")
    optkern_visible_cuda_architectures(archs)
    if(archs)
      list(JOIN archs ", " shown)
      message(STATUS "optkern: CUDA module for the visible GPU architecture(s) ${shown} "
                     "(-DCMAKE_CUDA_ARCHITECTURES=... to choose others)")
      set(CMAKE_CUDA_ARCHITECTURES "${archs}" PARENT_SCOPE)
      set(${build} TRUE PARENT_SCOPE)
    else()
      message(STATUS "optkern: no CUDA GPU visible: building the CPU module only "
                     "(-DOPTKERN_CUDA=ON or -DCMAKE_CUDA_ARCHITECTURES=... builds the CUDA module anyway)")
      set(${build} FALSE PARENT_SCOPE)
    endif()
  else()
    message(FATAL_ERROR "OPTKERN_CUDA must be AUTO, ON or OFF, got '${OPTKERN_CUDA}'")
  endif()
endfunction()

# ccache or sccache, when installed, for every compiler (CPU and CUDA): a rebuild
# after `git pull` or a second `pip install` reuses the objects that did not change.
# A launcher given on the command line or in the environment wins.
function(optkern_use_compiler_cache)
  if(NOT OPTKERN_COMPILER_CACHE)
    return()
  endif()
  find_program(OPTKERN_CACHE_PROGRAM NAMES ccache sccache)
  if(NOT OPTKERN_CACHE_PROGRAM)
    return()
  endif()
  set(launcher "${OPTKERN_CACHE_PROGRAM}")
  if(OPTKERN_CACHE_PROGRAM MATCHES "ccache$")
    # ccache caches compiles that use a precompiled header only with this sloppiness
    set(launcher env "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
                 "${OPTKERN_CACHE_PROGRAM}")
  endif()
  foreach(lang CXX CUDA)
    if(NOT CMAKE_${lang}_COMPILER_LAUNCHER)
      set(CMAKE_${lang}_COMPILER_LAUNCHER "${launcher}" PARENT_SCOPE)
    endif()
  endforeach()
  message(STATUS "optkern: compiler cache ${OPTKERN_CACHE_PROGRAM}")
endfunction()

# pip builds in a new temporary environment each time, so pybind11's headers move and
# every compile line would change: ninja recompiles everything, ccache misses. Compile
# against a copy in the build folder instead; configure_file rewrites a header only when
# its contents change, so the second `pip install` finds its objects up to date.
function(optkern_stable_pybind11_headers)
  set(stable "${CMAKE_BINARY_DIR}/pybind11-include")
  file(GLOB_RECURSE headers RELATIVE "${pybind11_INCLUDE_DIR}" "${pybind11_INCLUDE_DIR}/pybind11/*")
  foreach(h IN LISTS headers)
    configure_file("${pybind11_INCLUDE_DIR}/${h}" "${stable}/${h}" COPYONLY)
  endforeach()
  foreach(t pybind11::pybind11_headers pybind11::headers)
    get_target_property(aliased ${t} ALIASED_TARGET)  # an alias takes no properties
    if(TARGET ${t} AND NOT aliased)
      set_property(TARGET ${t} PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${stable}")
    endif()
  endforeach()
endfunction()

# NumPy's headers (cpp/pool.cpp) move with pip's build environment too: the same copy.
function(optkern_stable_numpy_headers)
  set(stable "${CMAKE_BINARY_DIR}/numpy-include")
  list(GET Python_NumPy_INCLUDE_DIRS 0 src)
  file(GLOB_RECURSE headers RELATIVE "${src}" "${src}/numpy/*")
  foreach(h IN LISTS headers)
    configure_file("${src}/${h}" "${stable}/${h}" COPYONLY)
  endforeach()
  set_property(TARGET Python::NumPy PROPERTY INTERFACE_INCLUDE_DIRECTORIES "${stable}")
endfunction()
