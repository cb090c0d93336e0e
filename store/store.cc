// placeholder until the engine lands
#include "store/store.h"
