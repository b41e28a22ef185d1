// Exposes the Objective-C++ bridge to Swift.
#import "DHMAvatar.h"
