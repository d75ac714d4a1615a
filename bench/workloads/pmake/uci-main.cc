// The engine of gnuchess (src/engine, Fruit 2.1) on its own: gnuchess
// runs it as a thread speaking UCI over two pipes (src/components.cc);
// here those pipes are stdin and stdout, so the engine is a UCI program.
// pmake.sh small builds src/engine/*.cpp with this file (pmake/Makefile).
extern int pipefd_a2e[2];
extern int pipefd_e2a[2];
int pipefd_a2e[2] = {0, -1}; // the engine reads pipefd_a2e[0]
int pipefd_e2a[2] = {-1, 1}; // and writes pipefd_e2a[1]

namespace engine {
int main_engine(int argc, char *argv[]);
}

int main() { return engine::main_engine(0, 0); }
